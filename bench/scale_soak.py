"""A soak of the seed paper's study shape: two brought runs of ResNet-18 checkpoints, every stage, timed.

    .venv/bin/python bench/scale_soak.py --out /tmp/soak > bench/results/scale_soak.txt   # the committed output
      (its default configs: 4:layer1 101:layer1 4:layer1,layer2,layer3,layer4; 50 min on 2 busy cores)
    .venv/bin/python bench/scale_soak.py --out DIR --config 2:layer1 --width 0.0625 --size 32 \
        --stages probe,evolve --no-browser                                                    # a smoke run

The seed's shape is 2 runs (aligned, one tracked) × 101 checkpoints × the 960 channels of a ResNet-18's
layer1-layer4 at 96 px × 2 repeats. Its checkpoints are made here, not trained: a seeded ResNet-18
(torchvision's, `weights=None`; protoscope's own at `--width` other than 1) is epoch 0, and each
later epoch is the one before plus Gaussian noise whose scale shrinks with the epoch (a random walk
settling down), saved as plain state-dict tensors (`epoch_<n>.pt`) in a folder per run: the
`path:` runs of docs/getting-started/your-checkpoints.md. Each `--config EPOCHS:LAYERS` is one study
over the first EPOCHS checkpoints of both runs and the given layers (its own store), every stage at
a smoke budget for the engine (a small pool, one CMA generation, a few Adam steps: speed is measured
by synth_speed.py): probe, evolve, analyze, rsa, align (with tracking), trust, tuning, atlas, report.

Each stage runs as its own `protoscope STAGE study.yaml` process; measured per stage: wall seconds,
peak memory of its whole process tree (the sum of RSS over the process and every descendant,
sampled from /proc every `--interval` s; a page shared by two processes counts twice, so the sum
can overstate), and the bytes it added to the store. Per config: the report site's
size, and in Chromium (Playwright, headless, from disk: `site_scale.browse`) the layer view's and a
unit page's first paint and epoch-slider steps. Between the configs with the same layers and the
fewest and most epochs, each stage's ratio of time and of peak memory shows what grows with epochs
(and between those with the same epochs, what grows with units).

Goals (issue #43): every stage peaks under 12 GiB; no stage's peak memory grows with epochs beyond
what it must hold (flagged: a peak ratio above 1.5 between the smallest and largest epoch count whose
peak also grows by more than 0.5 GiB); site first paint and slider steps under 200 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

BENCH = Path(__file__).parent
sys.path.insert(0, str(BENCH))

STAGES = ("probe", "evolve", "analyze", "rsa", "align", "trust", "tuning", "atlas", "report")
RUNS = ("soak-a", "soak-b")
PEAK_LIMIT_GB = 12.0
PAINT_LIMIT_MS = 200.0
GIB, MIB = 2**30, 2**20
DEFAULT_CONFIGS = ("4:layer1", "101:layer1", "4:layer1,layer2,layer3,layer4")


@dataclass
class Config:
    epochs: int  # checkpoints per run, epoch 0 included
    layers: list[str]
    stages: dict[str, dict] = field(default_factory=dict)  # stage -> seconds, peak, added, rc
    site: dict | None = None

    @property
    def label(self) -> str:
        return f"{self.epochs} epochs x {'+'.join(self.layers)}"


def parse_config(text: str) -> Config:
    epochs, _, layers = text.partition(":")
    return Config(int(epochs), [name for name in layers.split(",") if name] or ["layer1"])


# --- checkpoints -----------------------------------------------------------------------------------

def fresh_model(width: float, seed: int):
    import torch
    import torchvision

    from protoscope.nets.models import build_model

    torch.manual_seed(seed)
    if width == 1.0:
        return torchvision.models.resnet18(weights=None)
    return build_model("resnet18", width)


def make_checkpoints(folder: Path, epochs: int, width: float, seed: int, step: float = 0.02) -> None:
    """epoch_0.pt: a seeded ResNet-18; epoch_k.pt: epoch k-1 plus noise of std step·σ(param)/√k."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("epoch_*.pt"))) >= epochs:
        return
    state = {k: v.clone() for k, v in fresh_model(width, seed).state_dict().items() if not k.startswith("fc.")}
    scales = {k: float(v.float().std()) if v.numel() > 1 else 0.0 for k, v in state.items()}
    generator = torch.Generator().manual_seed(seed + 1000)
    for epoch in range(epochs):
        if epoch:
            for key, value in state.items():
                if value.is_floating_point() and "running_var" not in key and scales[key] > 0:
                    noise = torch.randn(value.shape, generator=generator)
                    value.add_(noise * (step * scales[key] / epoch**0.5))
        torch.save(state, folder / f"epoch_{epoch}.pt")


def run_folder(source: Path, target: Path, epochs: int) -> Path:
    """A folder of links to the first `epochs` checkpoints of `source`."""
    target.mkdir(parents=True, exist_ok=True)
    for epoch in range(epochs):
        link = target / f"epoch_{epoch}.pt"
        if not link.exists():
            link.symlink_to(source / f"epoch_{epoch}.pt")
    return target


# --- the study ------------------------------------------------------------------------------------

def soak_study(store: Path, folders: list[Path], config: Config, width: float, size: int) -> dict:
    """The seed's study shape on brought runs, every stage on, at a smoke budget for the engine."""
    last = config.epochs - 1
    return {
        "name": "scale-soak", "store": str(store), "device": "cpu", "workers": 0, "layers": config.layers,
        "defaults": {"arch": "resnet18", "width": width, "epochs": last,
                     "data": {"name": "shapes", "image_size": size, "epoch_size": 256}},
        "runs": [{"name": name, "path": str(folder)} for name, folder in zip(RUNS, folders)],
        "probe": {"train_size": 64, "test_size": 32, "adam_epochs": 5},
        "synth": {"repeats": 2, "pool_size": 32, "cma_generations": 1, "adam_steps": 4, "rf_samples": 16,
                  "natural_starts": 8},
        "analyze": {"spaces": ["pixel", {"run": RUNS[0]}]},
        "rsa": {"images": 64},
        "align": {"images": 64, "mi_samples": 2000, "sparse_iter": 50, "track": list(RUNS)},
        "trust": {"k": 4, "draws": 2},
        "tuning": {"images": 8, "shuffles": 2, "phases": 2},
        "atlas": {"images": 200, "grid": 4, "min_count": 4, "pool_size": 16, "adam_steps": 4, "batch_size": 16},
    }


# --- measuring a stage ----------------------------------------------------------------------------

def tree_rss(root: int) -> int:
    """Bytes resident in `root` and all its descendants (RSS summed: shared pages count once per process)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo, page = 0, [root], os.sysconf("SC_PAGE_SIZE")
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
        except (OSError, IndexError):
            pass
    return total


def folder_bytes(folder: Path) -> int:
    total = 0
    for parent, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(parent, name)).st_size
            except OSError:
                pass
    return total


def run_stage(stage: str, study: Path, store: Path, interval: float, log: Path) -> dict:
    """`protoscope STAGE STUDY` in a fresh process: its seconds, process tree's peak RSS, bytes added."""
    before = folder_bytes(store)
    started = time.perf_counter()
    with log.open("a") as out:
        out.write(f"\n=== {stage}\n")
        out.flush()
        proc = subprocess.Popen([sys.executable, "-m", "protoscope.cli", stage, str(study)],
                                stdout=out, stderr=subprocess.STDOUT)
        peak = [0]
        sampler = threading.Thread(target=_sample, args=(proc, interval, peak), daemon=True)
        sampler.start()
        rc = proc.wait()
        sampler.join()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak": peak[0], "added": folder_bytes(store) - before, "rc": rc}


def _sample(proc: subprocess.Popen, interval: float, peak: list[int]) -> None:
    while proc.poll() is None:
        peak[0] = max(peak[0], tree_rss(proc.pid))
        time.sleep(interval)


# --- the site in Chromium -------------------------------------------------------------------------

def measure_site(store: Path, config: Config, width: float, steps: int, browser: bool) -> dict:
    from site_scale import browse, site_size

    site = store / "site"
    files, size, _, largest = site_size(site)
    out = {"files": files, "bytes": size, "largest": largest, "views": {}}
    layer, last = config.layers[-1], config.epochs - 1
    unit = min(7, unit_count(Config(1, [layer]), width) - 1)
    views = (("layer view", f"#/layer/{RUNS[0]}/{layer}/{last}/unit", "firstLayerPaint"),
             ("unit page", f"#/unit/{RUNS[0]}/{layer}/{unit}/{last}", "firstUnitPaint"))
    for label, route, key in views if browser else ():
        out["views"][label] = browse(site, route, steps, key)
    return out


# --- one config, start to end ---------------------------------------------------------------------

def soak(config: Config, args, sources: list[Path]) -> Config:
    root = args.out / f"e{config.epochs}-{'-'.join(config.layers)}"
    shutil.rmtree(root, ignore_errors=True)
    folders = [run_folder(src, root / "checkpoints" / name, config.epochs) for src, name in zip(sources, RUNS)]
    store = root / "store"
    store.mkdir(parents=True)
    study = root / "study.yaml"
    study.write_text(yaml.safe_dump(soak_study(store, folders, config, args.width, args.size), sort_keys=False))
    print(f"\n## {config.label}: {len(RUNS)} runs x {config.epochs} checkpoints x {unit_count(config, args.width)} "
          f"channels x 2 repeats", flush=True)
    for stage in args.stages:
        result = config.stages[stage] = run_stage(stage, study, store, args.interval, root / "stages.log")
        print(f"  {stage:8s} {result['seconds']:8.1f} s  peak {result['peak'] / GIB:6.2f} GiB  "
              f"+{result['added'] / MIB:8.1f} MiB  rc={result['rc']}", file=sys.stderr, flush=True)
        if result["rc"] != 0:
            print_table(config)
            print(f"{stage} failed (rc={result['rc']}); its log: {root / 'stages.log'}")
            print("".join((root / "stages.log").read_text().splitlines(True)[-15:]))
            return config
    print_table(config)
    if "report" in config.stages:
        config.site = measure_site(store, config, args.width, args.steps, not args.no_browser)
        print_site(config)
    return config


def unit_count(config: Config, width: float) -> int:
    channels = {"layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512}
    return sum(round(channels.get(name, 0) * width) for name in config.layers)


# --- the tables -----------------------------------------------------------------------------------

def print_table(config: Config) -> None:
    print(f"\n### {config.label}: seconds, peak memory (process tree), MiB added to the store")
    print(f"{'stage':<9} {'seconds':>9} {'peak GiB':>9} {'output MiB':>11}  flags")
    for stage, r in config.stages.items():
        flags = [f"FAILED rc={r['rc']}"] if r["rc"] else []
        flags += [f"PEAK ABOVE {PEAK_LIMIT_GB:g} GiB"] if r["peak"] / GIB > PEAK_LIMIT_GB else []
        print(f"{stage:<9} {r['seconds']:9.1f} {r['peak'] / GIB:9.2f} {r['added'] / MIB:11.1f}  {' '.join(flags)}")
    total = sum(r["seconds"] for r in config.stages.values())
    print(f"{'all':<9} {total:9.1f} {max(r['peak'] for r in config.stages.values()) / GIB:9.2f} "
          f"{sum(r['added'] for r in config.stages.values()) / MIB:11.1f}", flush=True)


def print_growth(small: Config, large: Config, width: float) -> list[str]:
    """Per stage, large / small for seconds and peak memory (same layers: growth with epochs; same epochs:
    with units); returns the stages whose memory grows with epochs."""
    by_epochs = small.layers == large.layers
    grow = large.epochs / small.epochs if by_epochs else unit_count(large, width) / unit_count(small, width)
    what = "checkpoints" if by_epochs else "units"
    print(f"\n### growth with {'epochs' if by_epochs else 'units'}: {small.label} -> {large.label} "
          f"({grow:.1f}x the {what})")
    print(f"{'stage':<9} {'time x':>8} {'peak x':>8} {'peak +GiB':>10}  flag")
    flagged = []
    for stage in large.stages:
        if stage not in small.stages:
            continue
        a, b = small.stages[stage], large.stages[stage]
        time_x, peak_x = b["seconds"] / max(a["seconds"], 1e-9), b["peak"] / max(a["peak"], 1)
        extra = (b["peak"] - a["peak"]) / GIB
        flag = "MEMORY GROWS WITH EPOCHS" if by_epochs and peak_x > 1.5 and extra > 0.5 else ""
        flagged += [stage] if flag else []
        print(f"{stage:<9} {time_x:8.2f} {peak_x:8.2f} {extra:10.2f}  {flag}")
    return flagged


def site_slow(site: dict) -> list[str]:
    return [label for label, view in site["views"].items()
            if max([view["fcp"] or 0, view["first"], *view["steps"]]) > PAINT_LIMIT_MS]


def print_site(config: Config) -> None:
    site = config.site
    print(f"\nthe report site of {config.label}:")
    print(f"site: {site['files']} files, {site['bytes'] / MIB:.1f} MiB; largest data file {site['largest'] / 1024:.1f} KiB")
    for label, view in site["views"].items():
        steps = sorted(view["steps"])
        worst = max([view["fcp"] or 0, view["first"], *steps])
        print(f"{label}: first contentful paint {view['fcp']:.0f} ms; route to sprites painted {view['first']:.0f} ms; "
              f"slider step median {steps[len(steps) // 2]:.0f} ms, max {steps[-1]:.0f} ms over {len(steps)} steps"
              f"{'  ABOVE 200 ms' if worst > PAINT_LIMIT_MS else ''}", flush=True)


def print_header(args, configs: list[Config]) -> None:
    full = 2 * 101 * 960 * 2
    print("# scale soak: the seed's study shape on brought checkpoints (bench/scale_soak.py)")
    print(f"command: .venv/bin/python bench/scale_soak.py {' '.join(args.argv)}")
    print(f"machine: {os.cpu_count()} cores, {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / GIB:.0f} GiB"
          + (f"; {args.note}" if args.note else ""))
    print(f"engine at a smoke budget: pool 32, 1 CMA generation, 4 Adam steps, rf_samples 16; image size {args.size}, "
          f"width {args.width:g}, repeats 2")
    print("peak memory: RSS summed over the stage's process tree, sampled every "
          f"{args.interval:g} s (shared pages count once per process: an upper bound)")
    for c in configs:
        prototypes = 2 * c.epochs * unit_count(c, args.width) * 2
        print(f"config {c.label}: {prototypes:,} prototypes = {prototypes / full:.2%} of the full shape "
              f"(2 runs x 101 x 960 x 2 = {full:,})")


# --- main -----------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/soak"), help="working folder (deleted unless --keep)")
    p.add_argument("--config", action="append", type=parse_config, default=None,
                   help=f"EPOCHS:LAYER,LAYER... (repeatable); default {' '.join(DEFAULT_CONFIGS)}")
    p.add_argument("--width", type=float, default=1.0, help="ResNet-18 channel multiplier (1: torchvision's)")
    p.add_argument("--size", type=int, default=96, help="image size (px)")
    p.add_argument("--stages", default=",".join(STAGES), type=lambda s: [x for x in s.split(",") if x])
    p.add_argument("--interval", type=float, default=0.15, help="seconds between memory samples")
    p.add_argument("--steps", type=int, default=10, help="slider steps timed in Chromium")
    p.add_argument("--no-browser", action="store_true", help="skip Chromium (the site's size is still measured)")
    p.add_argument("--keep", action="store_true", help="keep --out (checkpoints, stores, logs)")
    p.add_argument("--note", default="", help="a line for the header (what else ran on the machine)")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.config = args.config or [parse_config(c) for c in DEFAULT_CONFIGS]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    most = max(c.epochs for c in args.config)
    sources = [args.out / "made" / name for name in RUNS]
    for seed, folder in enumerate(sources):
        make_checkpoints(folder, most, args.width, seed)
    made = time.perf_counter() - started
    print_header(args, args.config)
    print(f"checkpoints made: 2 runs x {most} in {made:.0f} s, {folder_bytes(args.out / 'made') / GIB:.2f} GiB")
    for config in args.config:
        soak(config, args, sources)
    try:
        return report(args, started)
    finally:
        if not args.keep:
            shutil.rmtree(args.out, ignore_errors=True)


def report(args, started: float) -> int:
    configs, grown = args.config, []
    for key in [lambda c: tuple(c.layers), lambda c: c.epochs]:  # growth with epochs, then with units
        for group in {key(c) for c in configs}:
            same = sorted((c for c in configs if key(c) == group), key=lambda c: (c.epochs, unit_count(c, args.width)))
            if len(same) > 1:
                grown += print_growth(same[0], same[-1], args.width)
    slow = [f"{c.label}: {view}" for c in configs if c.site for view in site_slow(c.site)]
    failed = [f"{c.label}: {s}" for c in configs for s, r in c.stages.items() if r["rc"]]
    high = [f"{c.label}: {s}" for c in configs for s, r in c.stages.items() if r["peak"] / GIB > PEAK_LIMIT_GB]
    print(f"\nwhole soak: {time.perf_counter() - started:.0f} s")
    print(f"failed={len(failed)} above_12GiB={len(high)} memory_grows_with_epochs={','.join(grown) or 'none'} "
          f"site_above_200ms={','.join(slow) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
