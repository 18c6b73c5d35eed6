"""Atlas icons: all cells of a grid in one batched engine run, against one cell at a time.

    python bench/atlas_speed.py [--checkpoint out/demo/runs/clrjit-s0/epoch_008.safetensors --width 0.125] \
        [--cells 64] [--steps 48] > bench/results/atlas_speed.txt
    python bench/atlas_speed.py --images 200 --grid 4 --cells 2 --steps 2    # a smoke run

The atlas's own recipe on one layer (`layer3` of a small-input ResNet-18 at 32 px, `--width` 0.25 as the
demo had when the results were committed; random init without --checkpoint): 1500 images of the built-in shapes, one activation each at a random position, a UMAP
layout, a 12 × 12 grid, whitened cell means; the first `--cells` filled cells are drawn twice with
the same engine settings (pool 128, no CMA-ES, `--steps` Adam steps, the transformation-robust
forward, objective dot·cos²): once as one `synthesize` call over every cell, once as a loop of
one-cell calls (each its own pool, seeded alike). Equal quality is checked, not assumed: both
icons of a cell are rescored with the same plain forward and objective, and the medians printed.
The last line has `batched_speedup=`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))  # bench/common.py


def directions(model, layer: str, images: int, grid: int, seed: int = 0) -> np.ndarray:
    from protoscope.analyze.atlas import grid_average, normalize_layout, umap_layout, whiten
    from protoscope.analyze.atlas_draw import layer_samples
    from protoscope.data.datasets import labelled
    from protoscope.study import DataSpec

    data = labelled(DataSpec(name="shapes", image_size=32), "probe", images)
    acts = layer_samples(model, layer, data.images, seed, "cpu")
    cells = grid_average(normalize_layout(umap_layout(acts, seed=seed)), acts, grid)
    return whiten(cells.means[cells.filled], acts)


def main(argv: list[str] | None = None) -> int:
    from common import engine_config

    from protoscope.nets.checkpoints import load_into
    from protoscope.nets.models import build_model
    from protoscope.stages.prototypes import build_generator
    from protoscope.study import SynthSpec
    from protoscope.synth.engine import synthesize
    from protoscope.synth.layer import layer_forward
    from protoscope.synth.objectives import DirectionCosine
    from protoscope.synth.robust import robust_forward

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--width", type=float, default=0.25,
                        help="the ResNet-18's width (the committed run's demo: 0.25; today's demo: 0.125)")
    parser.add_argument("--layer", default="layer3")
    parser.add_argument("--cells", type=int, default=64)
    parser.add_argument("--steps", type=int, default=48)
    parser.add_argument("--images", type=int, default=1500, help="shapes laid out by UMAP")
    parser.add_argument("--grid", type=int, default=12, help="the grid's cells per side")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = build_model("resnet18", args.width, True)
    if args.checkpoint:
        load_into(model, args.checkpoint)
    model.eval()
    found = directions(model, args.layer, args.images, args.grid)[: args.cells]
    plain, _ = layer_forward(model, args.layer, 32, crop=False)
    generator = build_generator(SynthSpec(generator_options={"cutoff": 8}), 32, "cpu")
    config = engine_config(pool_size=128, cma_generations=0, adam_steps=args.steps, patience=args.steps)
    objective = DirectionCosine(torch.as_tensor(found, dtype=torch.float32), position="centre")

    def draw(rows) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        result = synthesize(robust_forward(plain, 0), generator, objective.select(rows), seed=0, config=config)
        return result.images.numpy(), time.perf_counter() - start

    batched, batched_s = draw(list(range(len(found))))
    single = [draw([k]) for k in range(len(found))]
    single_images, single_s = np.concatenate([s[0] for s in single]), sum(s[1] for s in single)

    def rescored(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
            return objective(plain(x).float()).numpy()

    quality = {"batched": rescored(batched), "one cell at a time": rescored(single_images)}
    print(f"{'checkpoint: ' + str(args.checkpoint) if args.checkpoint else 'random init'}; {args.layer}; "
          f"{len(found)} cells; pool 128, {args.steps} Adam steps, robust forward; {torch.get_num_threads()} threads")
    for name, seconds in (("batched", batched_s), ("one cell at a time", single_s)):
        print(f"{name:20s} {seconds:7.1f} s  {seconds / len(found):6.3f} s/icon  "
              f"median objective {np.median(quality[name]):.4g}")
    print(f"batched_speedup={single_s / batched_s:.2f} "
          f"quality_ratio={np.median(quality['batched']) / np.median(quality['one cell at a time']):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
