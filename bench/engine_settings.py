#!/usr/bin/env python
"""What each change of the engine's Adam settings bought, one change at a time.

Random-init ResNet-18 at 96 px, the pixel generator of `synth_speed.py`, every
unit of each layer, one seed. Each row adds one change to the row above, from
the settings before issue #13 (betas 0.9/0.999, backtracking, patience 3) to
today's defaults; each runs once at 96 Adam steps and is read at every smaller
budget (`synthesize(on_step=…)`), every latent rescored on the full image in
float32. The cells are mean activations; the last column is the number of Adam
steps needed to reach the best mean activation the first row reaches at any
budget (lower is better). Steps, not seconds: a step costs the same in every
row (one forward+backward per unit still in the run), and step counts do not
depend on what else the machine is doing (`synth_speed.py` has the seconds).

    .venv/bin/python bench/engine_settings.py > bench/results/engine_settings.txt
    .venv/bin/python bench/engine_settings.py --layers layer1 --budgets 0,2 --image-size 32 --units 4 \
        --engine pool_size=32    # a smoke run: seconds
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import engine_config, engine_overrides  # noqa: E402
from synth_speed import engine_curve, make_forwards, time_to_reach  # noqa: E402

from protoscope.nets.models import build_model  # noqa: E402
from protoscope.runtime import bf16_native  # noqa: E402
from protoscope.synth.generators import make_generator  # noqa: E402
from protoscope.synth.layer import layer_units  # noqa: E402

BEFORE = {"adam_betas": (0.9, 0.999), "backtrack": True, "patience": 3}  # the settings before issue #13
CHANGES = [
    ("before #13: betas 0.9/0.999, backtracking, patience 3", {}),
    ("+ betas 0.5/0.9", {"adam_betas": (0.5, 0.9)}),
    ("+ no backtracking", {"backtrack": False}),
    ("+ patience 8 (today's defaults)", {"patience": 8}),
]


def settings_rows(overrides: dict) -> list:
    """(label, EngineConfig) per row: each adds its change to the row above; `overrides` apply to all."""
    fields, rows = dict(BEFORE), []
    for label, change in CHANGES:
        fields.update(change)
        rows.append((label, engine_config(**{**fields, **overrides})))
    assert rows[-1][1] == engine_config(**overrides), "the last row must be the defaults"
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", default="layer1,layer3")
    p.add_argument("--budgets", default="0,4,8,16,32,64,96")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--units", type=int, default=None, help="the first N units of each layer (default: every unit)")
    p.add_argument("--engine", action="append", default=[], metavar="FIELD=VALUE",
                   help="an EngineConfig field for every row, e.g. --engine pool_size=64")
    args = p.parse_args(argv)
    layers = [x for x in args.layers.split(",") if x]
    budgets = [int(x) for x in args.budgets.split(",")]
    size = args.image_size
    try:
        rows = settings_rows(engine_overrides(args.engine))
    except ValueError as error:
        p.error(str(error))
    torch.manual_seed(0)
    model = build_model("resnet18").eval().requires_grad_(False)
    generator = make_generator("pixel", size=size, latent_size=16)
    bf16 = bf16_native(torch.device("cpu"))
    channels = layer_units(model, layers, size)
    first = rows[0][1]
    print(f"random-init ResNet-18, {size} px, pixel generator, seed {args.seed}, {'bf16' if bf16 else 'float32'}; "
          f"pool {first.pool_size}, lr {first.adam_lr}; cells: mean activation (float32, full image) after each budget")
    for layer in layers:
        model.to(memory_format=torch.channels_last)
        forwards = make_forwards(model, layer, size)
        units = list(range(channels[layer]))[: args.units]
        curves = [engine_curve(label, forwards, generator, len(units), units, args.seed, cfg, budgets, bf16)
                  for label, cfg in rows]
        target = float(np.maximum.accumulate(curves[0].scores.mean(axis=1))[-1])
        print(f"\n{layer} ({len(units)} units); last column: Adam steps to reach {target:.2f}, the first row's best")
        print(f"{'settings':<54} " + " ".join(f"{f'{b} steps':>9}" for b in budgets) + f" {'to reach':>9}")
        for c in curves:
            cells = " ".join(f"{a:9.2f}" for a in c.scores.mean(axis=1))
            steps = time_to_reach(replace(c, seconds=[float(b) for b in c.budgets]), target)
            print(f"{c.method:<54} {cells} {steps:9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
