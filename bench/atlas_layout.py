"""Atlas layouts over training: one joint UMAP of every epoch against aligned UMAPs (one per epoch,
tied through the same images), by how many grid cells each epoch fills.

    python bench/atlas_layout.py [--store out/demo] > bench/results/atlas_layout.txt
    python bench/atlas_layout.py --quick --store STORE --images 60 --epochs 0,2 --layouts joint   # smoke

On a trained demo store (`make demo`): the atlas's own sampling of the demo's settings (`layer3`,
1000 images, one random position each, epochs 0, 4 and 8 of clrjit-s0 and keepclr-s0 on one map,
a 12 × 12 grid, cells with fewer than 8 activations empty), then both layouts with the same UMAP
settings and seed, normalized together. An atlas can only show filled cells: a layout that puts
each epoch on an island of its own leaves most of each epoch's grid empty.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, default=Path("out/demo"))
    parser.add_argument("--quick", action="store_true", help="the store is `protoscope demo --quick`'s")
    parser.add_argument("--images", type=int, default=None, help="atlas.images (default: the study's)")
    parser.add_argument("--epochs", default=None, help="atlas.epochs, comma-separated (default: the study's)")
    parser.add_argument("--layouts", default="joint,aligned", help="which layouts (each compiles its own UMAP code)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    from protoscope.analyze.atlas import aligned_layout, grid_average, shared_layout
    from protoscope.demo import QUICK
    from protoscope.stages.atlases import atlas_spec, chain_order, map_activations
    from protoscope.study import builtin_study, load_study

    overrides = dict(QUICK) if args.quick else {}  # as `demo_study(store, quick)` loads it, plus --images/--epochs
    atlas = dict(overrides.get("atlas", {}))
    if args.images:
        atlas["images"] = args.images
    if args.epochs:
        atlas["epochs"] = [int(e) for e in args.epochs.split(",") if e]
    overrides.update(store=str(args.store.resolve()), atlas=atlas)
    study = load_study(builtin_study("demo"), overrides)
    spec = atlas_spec(study)
    runs, layer = spec.together[0], spec.layers[0]
    acts = map_activations(study, runs, layer, "cpu", lambda *_, **__: None)  # the stage's own samples
    keys = chain_order(runs, list(acts))
    print(f"{layer}, {len(acts[keys[0]])} images, grid {spec.grid}, min_count {spec.min_count}; "
          f"filled cells per (run, epoch) of {spec.grid ** 2}")
    fits = {"joint": shared_layout, "aligned": aligned_layout}
    for label, fit in [(label, fits[label]) for label in args.layouts.split(",") if label]:
        started = time.perf_counter()
        layouts = fit([acts[k] for k in keys], n_neighbors=spec.n_neighbors, min_dist=spec.min_dist, seed=spec.seed)
        seconds = time.perf_counter() - started
        filled = {k: int(grid_average(lay, acts[k], spec.grid, spec.min_count).filled.sum())
                  for k, lay in zip(keys, layouts)}
        cells = " ".join(f"{run}@{epoch}={filled[run, epoch]}" for run, epoch in sorted(filled))
        print(f"{label:8s} {cells}  (min {min(filled.values())}, max {max(filled.values())}; {seconds:.1f} s incl. JIT)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
