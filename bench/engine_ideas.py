#!/usr/bin/env python
"""Each idea for a faster float32 engine, measured (issue #29, item 3).

Random-init torchvision ResNet-18 at 96 px, the speed bench's 16x16x3 pixel latent, layers 1-4.

1. **The step** (ideas that leave the numbers as they are): seconds per image of one engine step
   (generator, cropped forward to the studied cell, backward to the latents) at the machine's
   threads, for batch sizes 16 … 256 and the batch the 2 GB memory rule picks, channels-last or
   NCHW, with BatchNorm folded into the convolutions or not (`synth/fold.py`). The last column is
   the old default (channels-last, unfolded, memory-rule batch) over the new one (folded, batch
   capped at `cpu_batch_size`): the whole frontier moves left by that factor, at equal scores.
2. **The steps** (ideas that change the path): the engine on `--units` units of each layer with its
   Adam rule and with other rules — other step sizes, Adam's textbook betas, a step size decaying
   over the run, Rprop (a per-coordinate step size for deterministic gradients), and a
   coarse-to-fine gradient (each step also moves the latent's 2x2 and 4x4 block means). Mean
   activation after 8/16/32/64 steps, and the steps each needs to reach what the default has after
   64 (inf: never). Only the default rule lives in the engine; the others are written here,
   as replacements for the engine's update of the Adam phase.

    python bench/engine_ideas.py > bench/results/engine_ideas_avx2.txt
    python bench/engine_ideas.py --layers layer1 --batches 16,64 --units 4 --steps 8 --rules adam,rprop   # quick
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

_default_move = None  # the engine's own update, while `_run_rule` has replaced it
RULES = ("adam", "adam-lr1", "adam-lr3", "adam-betas-0.9-0.999", "adam-lr-decay", "rprop", "coarse-to-fine")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", default="layer1,layer2,layer3,layer4")
    parser.add_argument("--batches", default="16,32,64,128,256")
    parser.add_argument("--repeats", type=int, default=8, help="timed steps per setting (the fastest counts)")
    parser.add_argument("--units", type=int, default=32, help="units per layer for the step rules")
    parser.add_argument("--steps", type=int, default=64, help="Adam budget of the step rules")
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--parts", default="step,rules,floor", help="which tables: step, rules, floor")
    args = parser.parse_args(argv)
    from protoscope.nets.models import build_model
    from protoscope.runtime import bf16_native

    torch.manual_seed(0)
    model = build_model("resnet18").eval().requires_grad_(False).to(memory_format=torch.channels_last)
    print(f"resnet18 (random init) at 96 px, pixel latent 16x16x3, float32, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}; native bf16 here: "
          f"{bf16_native(torch.device('cpu'))}")
    layers, parts = [x for x in args.layers.split(",") if x], args.parts.split(",")
    if "step" in parts:
        step_table(model, layers, [int(b) for b in args.batches.split(",")], args.repeats)
    if "rules" in parts:
        rules_table(model, layers, args.units, args.steps, [r for r in args.rules.split(",") if r])
    if "floor" in parts:
        floor_table(model, layers, args.repeats)
    return 0


# --------------------------------------------------------------------------
# 1. The step
# --------------------------------------------------------------------------


def step_table(model, layers: list[str], batches: list[int], repeats: int) -> None:
    from protoscope.synth.engine import EngineConfig, pick_batch_size
    from protoscope.synth.generators import make_generator
    from protoscope.synth.layer import layer_forward, layer_units

    generator = make_generator("pixel", size=96, latent_size=16)
    print(f"\n1. one engine step, ms per image (the fastest of {repeats} steps)")
    print("layer  | setting            | " + " | ".join(f"b{b:<4}" for b in batches) + " | memory rule | old/new")
    for layer in layers:
        units = layer_units(model, [layer], 96)[layer]
        row_times = {}
        for name, channels_last, fold in (("channels-last", True, False), ("NCHW", False, False),
                                          ("channels-last fold", True, True)):
            model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            forward, _ = layer_forward(model, layer, 96, crop=True, channels_last=channels_last, fold=fold)
            rule = pick_batch_size(EngineConfig(cpu_batch_size=10**6), forward, generator, torch.device("cpu"), False)
            times = {b: _step_seconds(forward, generator, units, b, repeats) for b in batches + [rule]}
            row_times[name] = (times, rule)
            print(f"{layer:<6} | {name:<18} | " + " | ".join(f"{1e3 * times[b]:5.2f}" for b in batches)
                  + f" | {1e3 * times[rule]:5.2f} (b{rule})", flush=True)
        model.to(memory_format=torch.channels_last)
        old_times, old_rule = row_times["channels-last"]
        new_times, _ = row_times["channels-last fold"]
        cap = EngineConfig().cpu_batch_size
        new = new_times[cap] if cap in new_times else math.nan
        print(f"{layer:<6} | old default / new default (b{old_rule} unfolded / b{cap} folded): "
              f"{old_times[old_rule] / new:.2f}x")


def _step_seconds(forward, generator, units: int, batch: int, repeats: int) -> float:
    from protoscope.synth.objectives import ChannelCentre

    objective = ChannelCentre(torch.arange(batch) % units)
    samples = []
    for r in range(repeats + 1):
        z = torch.randn(batch, generator.latent_dim, generator=torch.Generator().manual_seed(r)).requires_grad_(True)
        start = time.perf_counter()
        torch.autograd.grad(-objective(forward(generator(z))).sum(), z)
        if r:  # the first is a warm-up
            samples.append(time.perf_counter() - start)
    return min(samples) / batch  # the fastest: another process's time slice only ever adds


# --------------------------------------------------------------------------
# 2. The steps
# --------------------------------------------------------------------------


def rules_table(model, layers: list[str], n_units: int, steps: int, rules: list[str]) -> None:
    from protoscope.synth.generators import make_generator
    from protoscope.synth.layer import layer_units, prepare

    generator = make_generator("pixel", size=96, latent_size=16)
    marks = [k for k in (8, 16, 32, 64, 96) if k <= steps]
    print(f"\n2. step rules: mean activation of {n_units} units per layer after k steps (the engine's forward, "
          f"float32); 'to reach': steps to the default rule's activation at {steps}")
    print("layer  | rule                  | " + " | ".join(f"{k:>3} st" for k in marks) + " | to reach | s/unit")
    for layer in layers:
        prepared = prepare(model, layer, 96)
        units = sorted(torch.randperm(layer_units(model, [layer], 96)[layer],
                                      generator=torch.Generator().manual_seed(1))[:n_units].tolist())
        target = None
        for rule in rules:
            best, seconds = _run_rule(rule, prepared, generator, units, steps)
            target = best[:, -1].mean().item() if target is None else target
            means = best.mean(dim=0)
            reach = next((k + 1 for k in range(steps) if means[k] >= target * (1 - 1e-5)), math.inf)
            print(f"{layer:<6} | {rule:<21} | " + " | ".join(f"{means[k - 1]:6.2f}" for k in marks)
                  + f" | {reach:>8} | {seconds / len(units):.3f}", flush=True)


# --------------------------------------------------------------------------
# 3. The floor
# --------------------------------------------------------------------------


def floor_table(model, layers: list[str], repeats: int) -> None:
    """How close each step runs to what this CPU's convolutions can do: FLOPs per second."""
    from protoscope.synth.engine import EngineConfig
    from protoscope.synth.generators import make_generator
    from protoscope.synth.layer import layer_forward, layer_units

    generator = make_generator("pixel", size=96, latent_size=16)
    batch = EngineConfig().cpu_batch_size
    peak = _conv_gflops(repeats)
    print(f"\n3. the floor: GFLOP per image step (forward and the backward to the input, torch's FlopCounterMode) "
          f"and GFLOP/s; beside them, one large batched 3x3 convolution's forward (64 channels, 56x56, batch 64): "
          f"{peak:.0f} GFLOP/s")
    print("layer  | GFLOP/step engine | GFLOP/step per-unit | engine GFLOP/s (b64, folded) | per-unit GFLOP/s | "
          "engine % of the large conv")
    for layer in layers:
        units = layer_units(model, [layer], 96)[layer]
        model.to(memory_format=torch.channels_last)
        engine, _ = layer_forward(model, layer, 96, crop=True, channels_last=True, fold=True)
        model.to(memory_format=torch.contiguous_format)
        full, _ = layer_forward(model, layer, 96, crop=False, channels_last=False)  # the per-unit method's
        flops_engine, flops_full = _step_flops(engine, generator, units), _step_flops(full, generator, units)
        engine_rate = flops_engine / _step_seconds(engine, generator, units, batch, repeats) / 1e9
        unit_rate = flops_full / _step_seconds(full, generator, units, 1, 4 * repeats) / 1e9
        print(f"{layer:<6} | {flops_engine / 1e9:17.3f} | {flops_full / 1e9:19.3f} | {engine_rate:28.0f} | "
              f"{unit_rate:16.0f} | {100 * engine_rate / peak:.0f} %", flush=True)
    model.to(memory_format=torch.channels_last)


def _step_flops(forward, generator, units: int) -> float:
    """FLOPs of one image's step, counted by torch on the ops that run (per image, from a batch of 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    from protoscope.synth.objectives import ChannelCentre

    z = torch.randn(2, generator.latent_dim).requires_grad_(True)
    forward(generator(z.detach()))  # a forward's first call also finds the layer's layout: not a step's work
    with FlopCounterMode(display=False) as counter:  # .backward(): the counter cannot follow autograd.grad
        (-ChannelCentre(torch.arange(2) % units)(forward(generator(z))).sum()).backward()
    return counter.get_total_flops() / 2


def _conv_gflops(repeats: int) -> float:
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).requires_grad_(False).to(memory_format=torch.channels_last)
    x = torch.randn(64, 64, 56, 56).contiguous(memory_format=torch.channels_last)
    conv(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        conv(x)
        times.append(time.perf_counter() - start)
    return 2 * 64 * 64 * 9 * 56 * 56 * 64 / min(times) / 1e9


def _run_rule(rule: str, prepared, generator, units: list[int], steps: int) -> tuple[torch.Tensor, float]:
    """Best-so-far score per unit after each Adam step, under `rule`; and the run's seconds."""
    from protoscope.synth import engine
    from protoscope.synth.engine import EngineConfig
    from protoscope.synth.layer import layer_prototypes

    config = replace(EngineConfig(), adam_steps=steps, patience=steps)  # every rule gets every step
    config = {"adam-lr1": replace(config, adam_lr=1.0), "adam-lr3": replace(config, adam_lr=3.0),
              "adam-betas-0.9-0.999": replace(config, adam_betas=(0.9, 0.999))}.get(rule, config)
    global _default_move
    original = _default_move = engine._adam_move
    engine._adam_move = {"adam-lr-decay": _decaying, "rprop": _rprop, "coarse-to-fine": _coarse_to_fine}.get(rule,
                                                                                                           original)
    try:
        start = time.perf_counter()
        result = layer_prototypes(prepared, generator, units, seed=0, config=config, device=torch.device("cpu"),
                                  bf16=False)
        seconds = time.perf_counter() - start
    finally:
        engine._adam_move = original
    trace = torch.nan_to_num(result.trace, nan=-math.inf)
    return trace.cummax(dim=1).values, seconds


def _decaying(config, adam, best_z, grad, worse):
    """Adam at twice the step size, shrinking by 3 % a step (about the default's at step 23)."""
    step = int(adam.steps[adam.alive].max()) if len(adam.alive) else 0
    saved = adam.lr.clone()
    adam.lr.mul_(2.0 * 0.97**step)
    _default_move(config, adam, best_z, grad, worse)
    adam.lr.copy_(saved)


def _rprop(config, adam, best_z, grad, worse):
    """Rprop: a step size per coordinate, x1.2 while the gradient keeps its sign, x0.5 when it flips."""
    rows = adam.alive
    if not hasattr(adam, "eta"):
        adam.eta = torch.full_like(adam.z, config.adam_lr)  # the pixel latent's init_std is 1
        adam.last = torch.zeros_like(adam.z)
    flip = torch.sign(grad * adam.last[rows])
    eta = adam.eta[rows]
    eta = torch.where(flip > 0, (eta * 1.2).clamp(max=8.0), torch.where(flip < 0, (eta * 0.5).clamp(min=1e-3), eta))
    grad = torch.where(flip < 0, torch.zeros_like(grad), grad)
    adam.eta[rows], adam.last[rows] = eta, grad
    adam.z[rows] = adam.z[rows] - torch.sign(grad) * eta


def _coarse_to_fine(config, adam, best_z, grad, worse):
    """Adam on a gradient that also carries its 2x2 and 4x4 block means (a latent pyramid's)."""
    g = grad.view(len(grad), 3, 16, 16)
    pyramid = g + sum(f * F.interpolate(F.avg_pool2d(g, f), scale_factor=f, mode="nearest") for f in (2, 4))
    _default_move(config, adam, best_z, pyramid.reshape(grad.shape), worse)

if __name__ == "__main__":
    raise SystemExit(main())
