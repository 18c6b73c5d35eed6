"""The report site at scale: a synthetic store of 100,000 prototypes, the time to write its site, and
in Chromium the time to first paint and per slider step.

    python bench/site_scale.py --out /tmp/site_scale > bench/results/site_scale.txt
    python bench/site_scale.py --out DIR --runs 1 --epochs 2 --units 8 --steps 1 [--no-browser]   # a smoke run

The store: `--runs` × `--layers` × `--epochs` epochs × `--units` units, one repeat, `--size`-px
prototypes (smooth random images, upsampled from 8×8 noise, so PNG compresses them about as well as
real prototypes), a receptive-field mask per epoch, random scores and 32-step traces; no metrics,
no activations. Default 2 × 2 × 50 × 500 = 100,000 prototypes.

Measured: `write_site` from nothing, and again on the unchanged store (nothing to write); the
site's size and its largest data files; then Debian's Chromium (headless, Playwright) opening the
site from disk: the layer view's first contentful paint and the page's own time from route to the
sprite painted (`protoscope.timing.firstLayerPaint`), then `--steps` epoch-slider steps by the
arrow key, each timed from the key to the new sprite sheet loaded and painted (two animation
frames); the same for a unit page (its seven panels, four sprite sheets per step).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "report"))


def build_store(root: Path, runs: int, layers: int, epochs: int, units: int, size: int) -> Path:
    from PIL import Image

    from protoscope.store.arrays import ArrayStore

    store = ArrayStore(root / "store" / "arrays.zarr")
    rng = np.random.default_rng(0)
    names = [f"run{r}" for r in range(runs)]
    layer_names = [f"layer{k + 1}" for k in range(layers)]
    yy, xx = np.mgrid[:size, :size]
    mask = np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * (size / 5) ** 2)).astype(np.float32)
    for name in names:
        (root / "checkpoints" / name).mkdir(parents=True, exist_ok=True)
        for layer in layer_names:
            store.ensure_layer(name, layer, epochs=list(range(epochs)), repeats=1, units=units, image_size=size,
                               latent_dim=8, steps=32)
            for epoch in range(epochs):
                small = rng.integers(0, 256, (units, 8, 8, 3), dtype=np.uint8)
                images = np.stack([np.asarray(Image.fromarray(s).resize((size, size), Image.BILINEAR)) for s in small])
                store.write_job(name, layer, epoch, 0, prototype=images, score=rng.random(units).astype(np.float32),
                                latent=rng.random((units, 8)), trace=np.cumsum(rng.random((units, 32)), axis=1),
                                silent=np.zeros(units, bool))
                store.write_rf(name, layer, epoch, mask, mask)
    study = {"name": "site-scale", "store": "store", "layers": layer_names,
             "runs": [{"name": n, "path": f"checkpoints/{n}"} for n in names]}
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def site_size(site: Path) -> tuple[int, int, int, int]:
    files = [p for p in site.rglob("*") if p.is_file()]
    data = [p for p in files if p.suffix == ".js" and p.parent.name != site.name or p.name == "index.js"]
    largest = max((p.stat().st_size for p in data if p.name != "index.js"), default=0)
    return len(files), sum(p.stat().st_size for p in files), (site / "data" / "index.js").stat().st_size, largest


def browse(site: Path, route: str, steps: int, first_key: str) -> dict:
    from playwright.sync_api import sync_playwright

    from site_helpers import CHROMIUM_ARGS, chromium_path

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto((site / "index.html").as_uri() + route)
        page.wait_for_function(f"window.protoscope && protoscope.timing.{first_key} !== undefined", timeout=120_000)
        fcp = page.evaluate("(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime")
        first = page.evaluate(f"protoscope.timing.{first_key}")
        done = page.evaluate("protoscope.timing.steps.length")
        for k in range(steps):
            page.keyboard.press("ArrowLeft")
            page.wait_for_function(f"protoscope.timing.steps.length >= {done + k + 1}", timeout=60_000)
        times = page.evaluate(f"protoscope.timing.steps.slice({done})")
        browser.close()
    return {"fcp": fcp, "first": first, "steps": times}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/site_scale"))
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--units", type=int, default=500)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--no-browser", action="store_true", help="write the site only (no Chromium timings)")
    args = parser.parse_args(argv)
    from protoscope.report.site import write_site
    from protoscope.study import load_study

    total = args.runs * args.layers * args.epochs * args.units
    print(f"synthetic store: {args.runs} runs x {args.layers} layers x {args.epochs} epochs x {args.units} units "
          f"= {total} prototypes at {args.size} px")
    started = time.perf_counter()
    study_file = build_store(args.out, args.runs, args.layers, args.epochs, args.units, args.size)
    print(f"store written in {time.perf_counter() - started:.1f} s (not part of the site's time)")
    study = load_study(study_file)
    first = write_site(study)
    again = write_site(study)
    files, size, index_size, largest = site_size(first.path)
    print(f"write_site: {first.seconds:.1f} s from nothing ({first.written} files), "
          f"{again.seconds:.1f} s again unchanged ({again.written} files written)")
    print(f"site: {files} files, {size / 2**20:.1f} MiB; data/index.js {index_size / 1024:.1f} KiB; "
          f"largest other data file {largest / 1024:.1f} KiB")
    last = args.epochs - 1
    for label, route, key in (("layer view", f"#/layer/run0/layer2/{last}/unit", "firstLayerPaint"),
                              ("unit page", f"#/unit/run0/layer2/7/{last}", "firstUnitPaint")):
        if args.no_browser:
            break
        result = browse(first.path, route, args.steps, key)
        steps = sorted(result["steps"])
        print(f"{label}: first contentful paint {result['fcp']:.0f} ms; route to sprites painted {result['first']:.0f} ms; "
              f"slider step median {statistics.median(steps):.0f} ms, p90 {steps[int(0.9 * (len(steps) - 1))]:.0f} ms, "
              f"max {steps[-1]:.0f} ms over {len(steps)} steps")
    print(f"prototypes={total} write_s={first.seconds:.1f} rewrite_s={again.seconds:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
