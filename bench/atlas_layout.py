"""Atlas layouts over training: one joint UMAP of every epoch against aligned UMAPs (one per epoch,
tied through the same images), by how many grid cells each epoch fills.

    python bench/atlas_layout.py [--store out/demo] > bench/results/atlas_layout.txt

On a trained demo store (`make demo`): the atlas's own sampling of the demo's settings (`layer3`,
1000 images, one random position each, epochs 0, 4 and 8 of clrjit-s0 and keepclr-s0 on one map,
a 12 × 12 grid, cells with fewer than 8 activations empty), then both layouts with the same UMAP
settings and seed, normalized together. An atlas can only show filled cells: a layout that puts
each epoch on an island of its own leaves most of each epoch's grid empty.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, default=Path("out/demo"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from protoscope.analyze.atlas import aligned_layout, grid_average, shared_layout
    from protoscope.analyze.atlas_draw import layer_samples
    from protoscope.analyze.atlas_jobs import _chain, _files, _images, atlas_spec
    from protoscope.demo import demo_study
    from protoscope.nets.checkpoints import load_into
    from protoscope.nets.models import build_model

    study = demo_study(args.store)
    spec = atlas_spec(study)
    runs, layer = spec.together[0], spec.layers[0]
    acts = {}
    for name in runs:
        run = study.run(name)
        model, images = build_model(run.arch, run.width, run.small_input), _images(spec, run).images
        for epoch, path in _files(study, run).items():
            load_into(model, path)
            acts[name, epoch] = layer_samples(model.eval(), layer, images, spec.seed, "cpu")
    keys = _chain(runs, list(acts))
    print(f"{layer}, {len(acts[keys[0]])} images, grid {spec.grid}, min_count {spec.min_count}; "
          f"filled cells per (run, epoch) of {spec.grid ** 2}")
    for label, fit in (("joint", shared_layout), ("aligned", aligned_layout)):
        started = time.perf_counter()
        layouts = fit([acts[k] for k in keys], n_neighbors=spec.n_neighbors, min_dist=spec.min_dist, seed=spec.seed)
        seconds = time.perf_counter() - started
        filled = {k: int(grid_average(lay, acts[k], spec.grid, spec.min_count).filled.sum())
                  for k, lay in zip(keys, layouts)}
        cells = " ".join(f"{run}@{epoch}={filled[run, epoch]}" for run, epoch in sorted(filled))
        print(f"{label:8s} {cells}  (min {min(filled.values())}, max {max(filled.values())}; {seconds:.1f} s incl. JIT)")


if __name__ == "__main__":
    main()
