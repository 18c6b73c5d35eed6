#!/usr/bin/env python
"""Prototype metrics: time to compute everything for a demo-sized store, and how it grows with units.

Builds a synthetic array store shaped like the demo's (3 runs x 11 epochs x 2 repeats, layer1-layer4
with 16-32-64-128 units at scale 1, 32 px prototypes, a receptive-field mask per layer and epoch),
then runs the analyze stage (`protoscope.stages.analyze`) from scratch in the demo's two
spaces (pixel, and a checkpoint of the demo's narrow ResNet-18 as the embedding network) with both
distances. `--scales` multiplies the units of every layer. Per scale it prints the wall time and
where it went:

* ``embed``     forward passes of the embedding network (`ModelSpace.embed`);
* ``metrics``   the distance computations (diversity, change, consistency, as the stage calls them);
* ``other``     the rest: reading prototypes, masking, writing embeddings / per-unit arrays / Parquet.

Then it runs the same again (nothing to compute: the resume check) and prints its time. A first,
tiny scale runs before the others and is not shown: it pays torch's and zarr's one-time start-up.
Run it under the CPU lock on a shared machine:

    flock /tmp/protoscope-cpu.lock env OMP_NUM_THREADS=2 .venv/bin/python bench/prototype_metrics.py

Options: --scales 0.5,1,2,4  --runs 3  --epochs 11  --repeats 2  --size 32
A smoke run: --scales 0.125 --runs 1 --epochs 2 --repeats 1 --size 16 --no-warm-up
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml


def build_store(root: Path, scale: float, runs: int, epochs: int, repeats: int, size: int) -> dict:
    """A study file and its array store, prototypes random; returns counts."""
    from protoscope.nets.checkpoints import checkpoint_name, save_state
    from protoscope.nets.models import build_model
    from protoscope.store.arrays import ArrayStore

    arch = {"arch": "resnet18", "width": 0.25, "small_input": True}
    folder = root / "net"
    torch.manual_seed(0)
    save_state(folder / checkpoint_name(0), build_model(**arch).state_dict())
    names = [f"{c}-s{s}" for c, s in (("clrjit", 0), ("keepclr", 0), ("clrjit", 1), ("keepclr", 1))][:runs]
    study = {
        "name": "bench", "store": str(root / "store"), "device": "cpu",
        "layers": ["layer1", "layer2", "layer3", "layer4"],
        "defaults": dict(arch, data={"name": "shapes", "image_size": size}),
        "runs": [{"name": n, "condition": n.split("-")[0], "seed": int(n[-1]), "path": str(folder)} for n in names],
        "analyze": {"spaces": ["pixel", {"run": names[0], "epoch": 0, "name": "net"}], "distances": ["mse", "cosine"]},
    }
    (root / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    store = ArrayStore(root / "store" / "arrays.zarr")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    total = 0
    for name in names:
        for layer, base in zip(study["layers"], (16, 32, 64, 128)):
            units = max(2, round(base * scale))
            store.ensure_layer(name, layer, epochs=list(range(epochs)), repeats=repeats, units=units,
                               image_size=size, latent_dim=1, steps=1, attrs={"synth_rf": "layer"})
            sigma = size * (0.1 + 0.1 * int(layer[-1]))
            mask = np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * sigma**2)).astype(np.float32)
            for epoch in range(epochs):
                store.write_rf(name, layer, epoch, mask, mask)
                for r in range(repeats):
                    store.write_job(name, layer, epoch, r,
                                    prototype=rng.integers(0, 256, (units, size, size, 3), dtype=np.uint8),
                                    score=np.ones(units, np.float32), latent=np.zeros((units, 1), np.float32),
                                    trace=np.zeros((units, 1), np.float32), silent=np.zeros(units, bool))
                    total += units
    return {"prototypes": total, "units_per_run": sum(max(2, round(b * scale)) for b in (16, 32, 64, 128))}


def timed(module, name: str, bucket: list):
    """Wrap `module.name` (where its callers look it up) so that each call adds its seconds to `bucket`."""
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        out = real(*args, **kwargs)
        bucket.append(time.perf_counter() - start)
        return out

    setattr(module, name, wrapper)
    return real


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scales", default="0.5,1,2,4")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=11)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--warm-up", action=argparse.BooleanOptionalAction, default=True,
                        help="first a tiny scale, not shown, that pays the one-time start-up")
    args = parser.parse_args(argv)

    from protoscope.analyze import embeddings
    from protoscope.stages import prototype_metrics as stage  # the analyze stage's module: it calls the metrics

    embed_t, metric_t = [], []
    originals = [(embeddings.ModelSpace, "embed", timed(embeddings.ModelSpace, "embed", embed_t))]
    for name in ("diversity", "change", "consistency"):
        originals.append((stage, name, timed(stage, name, metric_t)))
    try:
        measure(args, embed_t, metric_t)
    finally:  # in-process callers (tests) get the real functions back
        for owner, name, real in originals:
            setattr(owner, name, real)
    return 0


def measure(args, embed_t: list, metric_t: list) -> None:
    """Per scale, a store built from nothing: the analyze stage, then again with nothing to do; one row each."""
    from protoscope.stages import analyze
    from protoscope.study import load_study

    print(f"threads={torch.get_num_threads()} runs={args.runs} epochs={args.epochs} repeats={args.repeats} "
          f"size={args.size}px spaces=pixel,net distances=mse,cosine")
    print(f"{'scale':>5} {'units/run':>9} {'prototypes':>10} {'total s':>8} {'embed s':>8} {'metrics s':>9} "
          f"{'other s':>8} {'embed %':>7} {'ms/proto':>8} {'resume s':>8}")
    scales = [float(s) for s in args.scales.split(",")]
    warm_up = [0.125] if args.warm_up else []  # the first, tiny one warms up torch and zarr: not shown
    for index, scale in enumerate(warm_up + scales, start=0 if args.warm_up else 1):
        root = Path(tempfile.mkdtemp(prefix="protoscope-bench-"))
        try:
            counts = build_store(root, scale, args.runs, args.epochs, args.repeats, args.size)
            study = load_study(root / "study.yaml")
            embed_t.clear(), metric_t.clear()
            start = time.perf_counter()
            analyze(study)
            total = time.perf_counter() - start
            embed, metric = sum(embed_t), sum(metric_t)
            start = time.perf_counter()
            assert analyze(study) == 0
            resume = time.perf_counter() - start
            if index == 0:
                continue
            print(f"{scale:>5g} {counts['units_per_run']:>9} {counts['prototypes']:>10} {total:>8.2f} {embed:>8.2f} "
                  f"{metric:>9.2f} {total - embed - metric:>8.2f} {100 * embed / total:>6.0f}% "
                  f"{1000 * total / counts['prototypes']:>8.3f} {resume:>8.2f}", flush=True)
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
