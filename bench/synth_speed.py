#!/usr/bin/env python
"""Prototype synthesis: the engine against a tuned per-unit method, at equal quality.

ResNet-18 at 96 px, layers layer1-layer4, one generator (16x16x3 pixel latent)
and one objective (the channel's centre unit) for every method:

* ``per-unit``         the seed's "previous" method: pycma (diagonal) for one
                       unit at a time, 10 generations x 20 with every
                       tolerance off (the full budget runs, always), then
                       torch Adam on that unit's latent; float32, full image.
                       Rows: the seed's Adam lr 0.05 (``per-unit lr0.05``) and
                       the lr that won a sweep on separate units (``per-unit``);
* ``per-unit engfwd``  the tuned per-unit method on the engine's own forward
                       (bf16 where native, channels-last, cropped input, the
                       pre-ReLU search): what batching and the shared pool buy
                       beyond tricks any method could use;
* ``engine``           ``protoscope.synth.engine.synthesize`` on every unit of
                       the layer, at several pool sizes and Adam budgets.

Every method's latents are rescored the same way: the full image through the
float32 network, centre unit. Each method is run once at its largest budget
and read at smaller ones (its steps never depend on the budget): the per-unit
method at 0/10/25/50/100 Adam steps, the engine at 0/4/8/16/32 (`on_step`).
That gives each layer's quality-speed frontier, and the iso-quality speedup:
the per-unit method's seconds per unit at its stated budget (50 Adam steps)
over the engine's seconds per unit to reach the same mean activation
(linear interpolation on the engine's frontier, the fastest pool size).

Several seeds (units sampled anew, method seeds changed); medians over seeds
with the min-max range. The last line of stdout reads

    speedup_vs_per_unit=<x> iso_quality_speedup=<x> activation_ratio=<x> silent_ours=<f> silent_per_unit=<f>

for the random-init network (the trained net's line precedes it). See
bench/README.md for the formulas; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import engine_config, engine_overrides  # noqa: E402

from protoscope.errors import UserError  # noqa: E402
from protoscope.nets.checkpoints import load_into  # noqa: E402
from protoscope.nets.models import build_model  # noqa: E402
from protoscope.runtime import autocast, bf16_native, resolve_device  # noqa: E402
from protoscope.synth.engine import EngineConfig, synthesize  # noqa: E402
from protoscope.synth.generators import make_generator  # noqa: E402
from protoscope.synth.layer import layer_forward, layer_units, pre_activation  # noqa: E402
from protoscope.synth.objectives import ChannelCentre  # noqa: E402
from protoscope.synth.position import unit_position  # noqa: E402

LAYERS = ("layer1", "layer2", "layer3", "layer4")
SMOKE = ["--layers", "layer1", "--conditions", "random", "--image-size", "32", "--seeds", "1", "--samples", "1",
         "--tune-units", "1", "--lrs", "2", "--pu-budgets", "0,2", "--pu-budget", "2", "--pu-generations", "1",
         "--pu-popsize", "4", "--engine", "pool_size=32", "--engine", "adam_steps=2", "--pools", "32",
         "--engine-budgets", "0,2", "--other-pool-budgets", "0,2"]  # `--smoke`: seconds, for tests; measures nothing
GPU = ["--device", "cuda", "--quick"]  # `--gpu`: the one command for a lent GPU (`make bench-gpu`)
SEED_PAPER_PER_S = 3.4  # prototypes per second, the seed paper's engine on its GPU (issue #29)
EVAL_BATCH = 128  # images per no-grad forward when rescoring
CONTENDED = 70  # % of the run's best load probe below which a row is flagged


def synced_time() -> float:
    """time.perf_counter, after the GPU has finished what was queued (its kernels run asynchronously)."""
    if torch.cuda.is_initialized():  # only once CUDA is in use
        torch.cuda.synchronize()
    return time.perf_counter()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Curve:
    """One method on one layer and seed: seconds per unit and final scores at each budget."""

    method: str
    budgets: list[int]  # Adam evaluations per unit
    seconds: list[float]  # seconds per unit to reach each budget
    scores: np.ndarray  # [budget, sampled unit], full-image float32
    cpu: float = math.nan  # load probe around the run, % of the run's best

    def at(self, budget: int) -> tuple[float, np.ndarray]:
        i = self.budgets.index(budget)
        return self.seconds[i], self.scores[i]

    def as_dict(self) -> dict:
        return {"method": self.method, "budgets": self.budgets, "seconds_per_unit": self.seconds,
                "scores": self.scores.tolist(), "cpu_percent": self.cpu}


# --------------------------------------------------------------------------
# Forwards and scoring
# --------------------------------------------------------------------------


@dataclass
class Forwards:
    """The network at one layer, as each method sees it."""

    full: object  # float32, NCHW, whole image: the baselines, and every rescoring
    engine: object  # the studied cell, from the input region it sees, channels-last
    search: object  # the engine forward before the layer's last ReLU (or the engine forward)


def make_forwards(model, layer: str, size: int) -> Forwards:
    cell = unit_position(model, layer, size)
    whole, _ = layer_forward(model, layer, size, crop=False, channels_last=False)

    def full(images: torch.Tensor) -> torch.Tensor:  # the studied cell of the whole image, as the crop gives it
        return whole(images)[:, :, cell.y:cell.y + 1, cell.x:cell.x + 1]

    engine, plan = layer_forward(model, layer, size, crop=True, channels_last=True, position=(cell.y, cell.x),
                                 fold=True)
    search = pre_activation(model, layer, engine, size, plan, (cell.y, cell.x)) or engine
    return Forwards(full, engine, search)


@torch.no_grad()
def rescore(forward, generator, latents: torch.Tensor, units: list[int]) -> np.ndarray:
    """The one scoring for every method: latents [budget, unit, dim] -> scores [budget, unit]."""
    flat = latents.reshape(-1, latents.shape[-1]).float()
    rows = torch.as_tensor(units).repeat(latents.shape[0])
    out = []
    for start in range(0, len(flat), EVAL_BATCH):
        part = slice(start, start + EVAL_BATCH)
        out.append(ChannelCentre(rows[part])(forward(generator(flat[part]))).float().cpu())
    return torch.cat(out).view(latents.shape[0], len(units)).numpy()


def probe_gflops() -> float:
    """A short float32 conv, median of 3: how much CPU this process gets right now."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).eval().requires_grad_(False)
    x = torch.randn(8, 64, 56, 56)
    times = []
    with torch.no_grad():
        conv(x)
        for _ in range(3):
            start = time.perf_counter()
            conv(x)
            times.append(time.perf_counter() - start)
    return 2 * 64 * 64 * 9 * 56 * 56 * 8 / float(np.median(times)) / 1e9


def generator_device(generator) -> torch.device:
    return next(generator.buffers(), torch.empty(0)).device


def warm_up(forward, generator, bf16: bool) -> None:
    """One small forward+backward so one-time kernel set-up is billed to no method."""
    z = generator.sample(2).requires_grad_(True)
    with autocast(z.device, bf16):
        out = forward(generator(z))
    out.float().sum().backward()


# --------------------------------------------------------------------------
# The per-unit method
# --------------------------------------------------------------------------


def cma_search(score, generator, unit: int, seed: int, args) -> torch.Tensor:
    """pycma CMA_diagonal on one unit for exactly `pu_generations` x `pu_popsize` images.

    Every stopping tolerance is off: with pycma's defaults a unit whose candidates all
    score 0 (a flat landscape) stops after one generation, and the baseline would be
    billed for less search than it is said to get.
    """
    import cma

    rng = torch.Generator().manual_seed(seed * 1_000_003 + unit)
    x0 = generator.sample(1, generator=rng)[0].double().numpy()
    es = cma.CMAEvolutionStrategy(x0, generator.init_std, {
        "CMA_diagonal": True, "popsize": args.pu_popsize, "seed": seed * 100_003 + unit + 1, "verbose": -9,
        "tolfun": 0, "tolfunhist": 0, "tolx": 0, "tolflatfitness": math.inf, "tolstagnation": math.inf,
    })
    for _ in range(args.pu_generations):
        candidates = es.ask()
        z = torch.as_tensor(np.asarray(candidates), dtype=torch.float32)
        es.tell(candidates, (-score(z, unit)).double().tolist())
    return torch.as_tensor(es.result.xbest, dtype=torch.float32)[None]


def adam_snapshots(forward, generator, z0: torch.Tensor, unit: int, lr: float, budgets: list[int], bf16: bool,
                   clock: float):
    """torch Adam on one latent; the best latent seen after each budget's evaluations, and when.

    Best over the evaluated iterates, the same rule the engine uses.
    """
    z = z0.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    objective = ChannelCentre([unit])
    best, best_z = -math.inf, z0.clone()
    seconds, latents = [], []
    for step in range(max(budgets) + 1):
        if step in budgets:
            seconds.append(synced_time() - clock)
            latents.append(best_z.clone())
        if step == max(budgets):
            break
        optimizer.zero_grad(set_to_none=True)
        with autocast(z.device, bf16):
            score = objective(forward(generator(z))).float()
        (-score.sum()).backward()
        if score.item() > best:
            best, best_z = score.item(), z.detach().clone()
        optimizer.step()
    return seconds, torch.cat(latents)


def per_unit_curve(method, forwards: Forwards, generator, units, seed, lr, budgets, args, engine_forward=False,
                   bf16=False) -> Curve:
    """The per-unit method on each unit in turn, timed unit by unit."""
    forward = forwards.engine if engine_forward else forwards.full
    search = forwards.search if engine_forward else forwards.full

    @torch.no_grad()
    def score(z, unit):
        with autocast(z.device, bf16):
            return ChannelCentre([unit] * len(z))(search(generator(z))).float()

    warm_up(forward, generator, bf16)
    before = probe_gflops()
    seconds, latents = [], []
    for unit in units:
        clock = synced_time()
        z0 = cma_search(score, generator, unit, seed, args)
        s, z = adam_snapshots(forward, generator, z0, unit, lr, budgets, bf16, clock)
        seconds.append(s)
        latents.append(z)
    cpu = (before + probe_gflops()) / 2
    scores = rescore(forwards.full, generator, torch.stack(latents, dim=1), units)
    return Curve(method, list(budgets), np.mean(seconds, axis=0).tolist(), scores, cpu)


def tune_lr(forwards: Forwards, generator, units: list[int], args) -> dict:
    """Mean final score of the per-unit method at each Adam lr, on units kept apart for tuning.

    When the largest lr wins, the sweep goes on doubling (at most 3 times) until one does
    worse: a best value at the edge of the grid is not a tuned one.
    """
    @torch.no_grad()
    def score(z, unit):
        return ChannelCentre([unit] * len(z))(forwards.full(generator(z))).float()

    starts = [cma_search(score, generator, unit, 999, args) for unit in units]

    def mean_score(lr: float) -> float:
        latents = [adam_snapshots(forwards.full, generator, z0, unit, lr, [args.pu_budget], False, 0.0)[1]
                   for z0, unit in zip(starts, units)]
        return float(rescore(forwards.full, generator, torch.stack(latents, dim=1), units).mean())

    sweep = {lr: mean_score(lr) for lr in args.lrs}
    for _ in range(3):
        top = max(sweep)
        if max(sweep, key=sweep.get) != top:
            break
        sweep[2 * top] = mean_score(2 * top)
    return sweep


# --------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------


def engine_curve(method, forwards: Forwards, generator, channels: int, sample: list[int], seed: int, config: EngineConfig,
                 budgets: list[int], bf16: bool) -> Curve:
    """One engine run on all units with the largest budget, read at every budget.

    Time at budget k: the run up to its k-th Adam evaluation, plus the run's final
    float32 rescoring (which a run stopped at k would also pay); the snapshot
    copies are not billed.
    """
    index = torch.as_tensor(sample)
    times, latents = {}, {}
    excluded = 0.0

    def snapshot(k, best_z, best):
        nonlocal excluded
        now = synced_time()
        if k in budgets:
            times[k] = now - start - excluded
            latents[k] = best_z[index].clone()
        excluded += synced_time() - now

    warm_up(forwards.engine, generator, bf16)
    before = probe_gflops()
    start = synced_time()
    result = synthesize(forwards.engine, generator, ChannelCentre(range(channels)), seed=seed,
                        config=replace(config, adam_steps=max(budgets)), device=generator_device(generator), bf16=bf16,
                        search_forward=forwards.search, on_step=snapshot)
    cpu = (before + probe_gflops()) / 2
    final = result.stats["final_seconds"]
    last = max(times)  # every unit left early: later budgets return what the last step had
    seconds = [(times.get(k, times[last]) + final) / channels for k in budgets]
    stacked = torch.stack([latents.get(k, latents[last]) for k in budgets])
    return Curve(method, list(budgets), seconds, rescore(forwards.full, generator, stacked, sample), cpu)


# --------------------------------------------------------------------------
# Frontier arithmetic
# --------------------------------------------------------------------------


def time_to_reach(curve: Curve, target: float) -> float:
    """Seconds per unit at which `curve`'s mean score first reaches `target` (linear interpolation); inf if never."""
    means = np.maximum.accumulate(curve.scores.mean(axis=1))
    secs = curve.seconds
    if means[0] >= target:
        return secs[0]
    for i in range(1, len(means)):
        if means[i] >= target:
            frac = (target - means[i - 1]) / (means[i] - means[i - 1])
            return secs[i - 1] + frac * (secs[i] - secs[i - 1])
    return math.inf


def layer_summary(curves: dict[str, Curve], args) -> dict:
    """Per layer and seed: the headline ratios (formulas in bench/README.md)."""
    pu_time, pu_scores = curves["per-unit"].at(args.pu_budget)
    target = float(pu_scores.mean())
    default = curves[f"engine pool{args.config.pool_size}"]
    eng_time, eng_scores = default.at(args.config.adam_steps)
    engines = [c for name, c in curves.items() if name.startswith("engine")]
    reach = min(time_to_reach(c, target) for c in engines)
    engfwd_time, engfwd_scores = curves["per-unit engfwd"].at(args.pu_budget)
    iso_at = {}
    for b in curves["per-unit"].budgets:
        t, s = curves["per-unit"].at(b)
        iso_at[b] = t / min(time_to_reach(c, float(s.mean())) for c in engines)
    return {
        "pu_seconds": pu_time, "pu_act": target, "pu_silent": float((pu_scores <= 0).mean()),
        "eng_seconds": eng_time, "eng_act": float(eng_scores.mean()), "eng_silent": float((eng_scores <= 0).mean()),
        "eng_seconds_to_pu_act": reach, "speedup": pu_time / eng_time, "iso_speedup": pu_time / reach,
        "iso_speedup_engfwd": engfwd_time / min(time_to_reach(c, float(engfwd_scores.mean())) for c in engines),
        "pu_silent_engfwd": float((engfwd_scores <= 0).mean()),
        "activation_ratio": float(eng_scores.mean()) / target if target > 0 else math.nan,
        "iso_at_pu_budget": iso_at,
    }


def condition_summary(per_layer: dict[str, dict], channels: dict[str, int]) -> dict:
    """Across layers for one seed: channel-weighted times, mean of per-layer activation ratios."""
    layers = list(per_layer)
    c = np.array([channels[l] for l in layers], dtype=float)
    col = lambda key: np.array([per_layer[l][key] for l in layers])  # noqa: E731
    ratios = col("activation_ratio")
    return {
        "speedup_vs_per_unit": float((col("pu_seconds") * c).sum() / (col("eng_seconds") * c).sum()),
        "iso_quality_speedup": float((col("pu_seconds") * c).sum() / (col("eng_seconds_to_pu_act") * c).sum()),
        "activation_ratio": float(np.nanmean(ratios)),
        "silent_ours": float((col("eng_silent") * c).sum() / c.sum()),
        "silent_per_unit": float((col("pu_silent") * c).sum() / c.sum()),
        "whole_checkpoint_seconds": float((col("eng_seconds") * c).sum()),
        "prototypes_per_s": float(c.sum() / (col("eng_seconds") * c).sum()),
        "iso_prototypes_per_s": float(c.sum() / (col("eng_seconds_to_pu_act") * c).sum()),
        "pu_prototypes_per_s": float(c.sum() / (col("pu_seconds") * c).sum()),
    }


def spread(values) -> tuple[float, float, float]:
    v = np.asarray(values, dtype=float)
    return float(np.median(v)), float(v.min()), float(v.max())


# --------------------------------------------------------------------------
# One condition
# --------------------------------------------------------------------------


def draw_units(channels: int, args) -> tuple[list[int], list[list[int]]]:
    """Tuning units, then each seed's sample from the rest (seeds may share units, never with tuning)."""
    order = torch.randperm(channels, generator=torch.Generator().manual_seed(12345)).tolist()
    tune, rest = sorted(order[: args.tune_units]), order[args.tune_units:]
    samples = []
    for seed in range(args.seeds):
        pick = torch.randperm(len(rest), generator=torch.Generator().manual_seed(seed)).tolist()[: args.samples]
        samples.append(sorted(rest[i] for i in pick))
    return tune, samples


def run_condition(name: str, model, generator, args, bf16: bool) -> dict:
    model.eval().requires_grad_(False)  # frozen for every method, as `evolve` runs it
    size = generator.image_size
    channels = layer_units(model, list(args.layers), size)
    out = {"channels": channels, "layers": {}}
    for layer in args.layers:
        C = channels[layer]
        tune, samples = draw_units(C, args)
        model.to(memory_format=torch.contiguous_format)
        forwards = make_forwards(model, layer, size)
        log(f"[{name}] {layer}: {C} channels; tuning the per-unit lr on units {tune}")
        sweep = tune_lr(forwards, generator, tune, args)
        lr = max(sweep, key=sweep.get)
        log(f"  lr sweep {', '.join(f'{k:g}: {v:.3f}' for k, v in sweep.items())} -> {lr:g}")
        seeds = []
        for seed, units in enumerate(samples):
            log(f"  seed {seed}: units {units}")
            model.to(memory_format=torch.contiguous_format)
            curves = {
                "per-unit lr0.05": per_unit_curve("per-unit lr0.05", forwards, generator, units, seed, 0.05,
                                                  [args.pu_budget], args),
                "per-unit": per_unit_curve("per-unit", forwards, generator, units, seed, lr, args.pu_budgets, args),
            }
            model.to(memory_format=torch.channels_last)  # the engine's layout, for engfwd and engine
            curves["per-unit engfwd"] = per_unit_curve("per-unit engfwd", forwards, generator, units, seed, lr,
                                                       [args.pu_budget], args, engine_forward=True, bf16=bf16)
            for pool in args.pools:
                key = f"engine pool{pool}"
                budgets = args.engine_budgets if pool == args.config.pool_size else args.other_pool_budgets
                curves[key] = engine_curve(key, forwards, generator, C, units, seed,
                                           replace(args.config, pool_size=pool), budgets, bf16)
            for key, c in curves.items():
                log(f"    {key:<17} " + "  ".join(f"{b}:{s:.3f}s/{c.scores[i].mean():.2f}"
                                                    for i, (b, s) in enumerate(zip(c.budgets, c.seconds))))
            seeds.append({"units": units, "curves": curves, "summary": layer_summary(curves, args)})
        model.to(memory_format=torch.contiguous_format)
        out["layers"][layer] = {"channels": C, "tune_units": tune, "lr_sweep": sweep, "lr": lr, "seeds": seeds}
    per_seed = [condition_summary({l: info["seeds"][s]["summary"] for l, info in out["layers"].items()}, channels)
                for s in range(args.seeds)]
    out["per_seed"] = per_seed
    out["summary"] = {k: spread([p[k] for p in per_seed]) for k in per_seed[0]}
    return out


# --------------------------------------------------------------------------
# Printing and plotting
# --------------------------------------------------------------------------


def fmt(x: float, spec: str = ".3f") -> str:
    return format(x, spec) if math.isfinite(x) else ("inf" if x == math.inf else "-")


def cell(values, spec=".3f") -> str:
    med, lo, hi = spread(values)
    return f"{fmt(med, spec)} [{fmt(lo, spec)}-{fmt(hi, spec)}]" if len(values) > 1 else fmt(med, spec)


def print_condition(cond: dict, header: str, args, best_probe: float) -> None:
    print(f"\n== {header} ==")
    print(f"medians over {args.seeds} seed(s) [min-max]; {args.samples} sampled units per layer and seed; "
          f"scores: full image, float32; s/unit: seconds per unit (engine: the whole layer's run / channels)")
    head = f"{'layer':<7} {'C':>4} {'lr*':>5} {'method':<17} {'budget':>10} {'s/unit':>22} {'act':>22} {'silent':>6} {'cpu%':>5}"
    print(head)
    print("-" * len(head))
    flagged = []
    for layer, info in cond["layers"].items():
        first = True
        default = f"engine pool{args.config.pool_size}"
        rows = [("per-unit lr0.05", args.pu_budget), ("per-unit", args.pu_budget), ("per-unit engfwd", args.pu_budget)]
        rows += [(default, b) for b in args.engine_budgets]
        rows += [(f"engine pool{p}", max(args.other_pool_budgets)) for p in args.pools if f"engine pool{p}" != default]
        for method, budget in rows:
            pairs = [seed["curves"][method].at(budget) for seed in info["seeds"]]
            secs, acts = [p[0] for p in pairs], [float(p[1].mean()) for p in pairs]
            silent = float(np.mean([(p[1] <= 0).mean() for p in pairs]))
            cpu = float(np.mean([seed["curves"][method].cpu for seed in info["seeds"]])) / best_probe * 100
            if cpu < CONTENDED:
                flagged.append(f"{layer} {method}")
            unit = "Adam steps" if method.startswith("per-unit") else "steps"
            print(f"{layer if first else '':<7} {info['channels'] if first else '':>4} "
                  f"{fmt(info['lr'], 'g') if first else '':>5} {method:<17} {f'{budget} {unit}':>10} "
                  f"{cell(secs, '.4f'):>22} {cell(acts):>22} {silent:6.2f} {cpu:5.0f}")
            first = False
    print(f"\nlr sweep of the per-unit method ({args.tune_units} tuning units per layer, {args.pu_budget} Adam steps, "
          f"mean final score): " + "; ".join(
              f"{layer} " + ", ".join(f"{lr:g}: {v:.2f}" for lr, v in info["lr_sweep"].items())
              for layer, info in cond["layers"].items()))
    settings = "defaults" if args.config == engine_config() else "--engine settings"
    print(f"\nper layer (engine at its {settings}: pool {args.config.pool_size}, {args.config.adam_steps} Adam steps; "
          f"vs the tuned per-unit method at {args.pu_budget} Adam steps)")
    budgets = args.pu_budgets
    head = f"{'layer':<7} {'speed x':>20} {'act x':>20} {'iso-quality x':>20} {'vs engfwd':>10}  iso-quality x at per-unit budgets " \
           + " ".join(f"{b:>6}" for b in budgets)
    print(head)
    print("-" * len(head))
    for layer, info in cond["layers"].items():
        s = [seed["summary"] for seed in info["seeds"]]
        iso_at = " ".join(f"{fmt(spread([x['iso_at_pu_budget'][b] for x in s])[0], '.1f'):>6}" for b in budgets)
        print(f"{layer:<7} {cell([x['speedup'] for x in s], '.1f'):>20} {cell([x['activation_ratio'] for x in s], '.2f'):>20} "
              f"{cell([x['iso_speedup'] for x in s], '.1f'):>20} {cell([x['iso_speedup_engfwd'] for x in s], '.1f'):>10}"
              f"  {' ' * 33}{iso_at}")
    print("vs engfwd: the same iso-quality speedup against `per-unit engfwd` at its budget (the per-unit method on the "
          "engine's forward, with its pre-ReLU search: it leaves no unit silent that a search can wake)")
    summary = cond["summary"]
    print(f"\nwhole checkpoint ({'+'.join(cond['layers'])}, {sum(i['channels'] for i in cond['layers'].values())} units, "
          f"one repeat, engine {settings}): {summary['whole_checkpoint_seconds'][0]:.1f} s, "
          f"{summary['prototypes_per_s'][0]:.1f} prototypes/s")
    print_throughput(cond, args)
    if flagged:
        print(f"! cpu% < {CONTENDED} (another process took CPU; those seconds are inflated): {', '.join(flagged)}")


def print_throughput(cond: dict, args) -> None:
    """Prototypes per second at equal quality: units over the engine's seconds to reach the tuned
    per-unit method's mean activation (at its stated budget); 0 where the engine never does."""
    print(f"\nprototypes per second at equal quality (the engine, until it reaches the tuned per-unit method's "
          f"mean activation at {args.pu_budget} Adam steps), beside the per-unit method and the seed paper")
    head = f"{'layer':<7} {'engine, equal quality':>22} {'engine, defaults':>17} {'per-unit':>9}"
    print(head)
    print("-" * len(head))
    for layer, info in cond["layers"].items():
        s = [seed["summary"] for seed in info["seeds"]]
        per_s = lambda key: spread([1 / x[key] if 0 < x[key] < math.inf else math.nan for x in s])[0]  # noqa: E731
        print(f"{layer:<7} {fmt(per_s('eng_seconds_to_pu_act'), '.2f'):>22} {fmt(per_s('eng_seconds'), '.2f'):>17} "
              f"{fmt(per_s('pu_seconds'), '.2f'):>9}")
    summary = cond["summary"]
    print(f"{'all':<7} {fmt(summary['iso_prototypes_per_s'][0], '.2f'):>22} {summary['prototypes_per_s'][0]:>17.2f} "
          f"{summary['pu_prototypes_per_s'][0]:>9.2f}")
    print(f"the seed paper: {SEED_PAPER_PER_S} prototypes/s (its published rate on its GPU; not measured here); "
          "-: the engine did not reach that activation within its budget (then 'all' reads 0)")


def final_line(summary: dict) -> str:
    keys = ("speedup_vs_per_unit", "iso_quality_speedup", "activation_ratio", "silent_ours", "silent_per_unit")
    return " ".join(f"{k}={summary[k][0]:.4g}" for k in keys)


def plot_frontier(results: dict, path: Path, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conds = results["conditions"]
    fig, axes = plt.subplots(len(conds), len(args.layers), figsize=(4 * len(args.layers), 3.4 * len(conds)), squeeze=False)
    for row, (name, cond) in enumerate(conds.items()):
        for col, (layer, info) in enumerate(cond["layers"].items()):
            ax = axes[row][col]
            methods = list(info["seeds"][0]["curves"])
            for method in methods:
                curves = [seed["curves"][method] for seed in info["seeds"]]
                secs = np.median([c.seconds for c in curves], axis=0)
                acts = np.mean([c.scores.mean(axis=1) for c in curves], axis=0)
                style = "o-" if method.startswith("engine") else ("s--" if len(secs) > 1 else "s")
                ax.plot(secs, acts, style, label=method, ms=4)
                if method in ("per-unit", f"engine pool{args.config.pool_size}"):
                    for b, x, y in zip(curves[0].budgets, secs, acts):
                        ax.annotate(str(b), (x, y), fontsize=7, xytext=(2, 2), textcoords="offset points")
            target = np.mean([seed["curves"]["per-unit"].at(args.pu_budget)[1].mean() for seed in info["seeds"]])
            ax.axhline(target, color="grey", lw=0.8, ls=":")
            ax.set_xscale("log")
            ax.set_title(f"{name} {layer} ({info['channels']} units)", fontsize=9)
            ax.set_xlabel("seconds per unit")
            if col == 0:
                ax.set_ylabel("mean activation (float32, full image)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("quality-speed frontier: numbers are Adam steps; dotted: tuned per-unit at "
                 f"{args.pu_budget} steps", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def to_json(value):
    if isinstance(value, Curve):
        return value.as_dict()
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, EngineConfig):
        return asdict(value)
    return value


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 seed, 6 units per layer, 2 tuning units, one pool size")
    p.add_argument("--gpu", action="store_true", help=f"the GPU run: {' '.join(GPU)} (then any arguments given)")
    p.add_argument("--smoke", action="store_true", help="seconds, measuring nothing: the arguments in SMOKE "
                   "(layer1 at 32 px, 1 unit, 2 Adam steps, engine pool 32), before any others given")
    p.add_argument("--seeds", type=int, default=None, help="seeds (full 3, quick 1)")
    p.add_argument("--samples", type=int, default=None, help="units per layer and seed (full 6, quick 6)")
    p.add_argument("--tune-units", type=int, default=None, help="units per layer for the lr sweep (full 3, quick 2)")
    p.add_argument("--lrs", default="0.05,0.2,0.5,1,2,4", help="per-unit Adam learning rates swept (latent units)")
    p.add_argument("--layers", default=",".join(LAYERS))
    p.add_argument("--conditions", default="random,trained")
    p.add_argument("--checkpoint", type=Path, default=None, help="the trained condition's checkpoint (safetensors)")
    p.add_argument("--width", type=float, default=1.0, help="the checkpoint's ResNet-18 width")
    p.add_argument("--small-input", action="store_true", help="the checkpoint's ResNet-18 has the small-image stem")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"], help="the engine forward's")
    p.add_argument("--pools", default=None, help="engine pool sizes (full 1024,4096; quick 1024)")
    p.add_argument("--engine-budgets", default="0,4,8,16,32,64,96",
                   help="engine Adam budgets read off one run at the default pool size")
    p.add_argument("--other-pool-budgets", default="0,4,8,16",
                   help="the same for the other pool sizes (a pool matters most at small budgets)")
    p.add_argument("--engine", action="append", default=[], metavar="FIELD=VALUE",
                   help="an EngineConfig field for every engine run, e.g. --engine adam_lr=1; pool_size and "
                        "adam_steps set the settings the summary reads (pools and budgets vary around them)")
    p.add_argument("--pu-budgets", default="0,10,25,50,100", help="per-unit Adam budgets read off one run")
    p.add_argument("--pu-budget", type=int, default=50, help="the per-unit method's stated Adam budget (the seed's)")
    p.add_argument("--pu-generations", type=int, default=10)
    p.add_argument("--pu-popsize", type=int, default=20)
    p.add_argument("--out", type=Path, default=None, help="write synth_speed.json and frontier.png here")
    argv = list(sys.argv[1:] if argv is None else argv)
    preset = (SMOKE if "--smoke" in argv else []) + (GPU if "--gpu" in argv else [])
    args = p.parse_args(preset + argv)
    quick = args.quick
    args.seeds = args.seeds or (1 if quick else 3)
    args.samples = args.samples or 6  # the equal-quality target is their mean: 2 units left it to chance
    args.tune_units = args.tune_units or (2 if quick else 3)
    args.pools = ints(args.pools or ("1024" if quick else "1024,4096"))
    args.lrs = [float(x) for x in args.lrs.split(",")]
    args.layers = [x for x in args.layers.split(",") if x]
    args.conditions = [x for x in args.conditions.split(",") if x]
    args.engine_budgets, args.pu_budgets = ints(args.engine_budgets), ints(args.pu_budgets)
    args.other_pool_budgets = ints(args.other_pool_budgets)
    try:  # the engine's settings: the evolve stage's for a default `synth:` section (bench/common.py), plus --engine
        args.config = engine_config(**engine_overrides(args.engine))
    except ValueError as error:
        p.error(str(error))
    if args.config.pool_size not in args.pools or args.config.adam_steps not in args.engine_budgets:
        p.error(f"--pools must include {args.config.pool_size} and --engine-budgets {args.config.adam_steps} "
                "(the engine's settings: its defaults, or --engine pool_size= / adam_steps=)")
    if args.pu_budget not in args.pu_budgets:
        p.error("--pu-budgets must include --pu-budget")
    return args


def conditions(args):
    if "random" in args.conditions:
        torch.manual_seed(0)
        yield "random", build_model("resnet18"), "random init: torchvision ResNet-18 (width 1), eval mode"
    if "trained" in args.conditions:
        if args.checkpoint is None:
            print("trained: skipped (no --checkpoint given)")
            return
        model = build_model("resnet18", width=args.width, small_input=args.small_input)
        load_into(model, args.checkpoint)
        yield "trained", model, (f"trained: ResNet-18 width {args.width:g}{', small-input stem' if args.small_input else ''}, "
                                 f"{args.checkpoint}, at {args.image_size} px")


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        device = resolve_device(args.device)
    except UserError as error:  # e.g. --gpu on a machine without CUDA
        print(f"synth_speed: {error}", file=sys.stderr)
        return 2
    if device.type != "cpu":
        torch.set_default_device(device)  # the per-unit method's latents are made on the default device
    bf16 = {"auto": bf16_native(device), "bf16": True, "fp32": False}[args.precision]
    generator = make_generator("pixel", size=args.image_size, latent_size=16).to(device)
    print(f"protoscope synthesis benchmark — torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, device {device}")
    print(f"generator pixel (16x16x3 latent, {args.image_size} px), objective ChannelCentre; engine {args.config}, "
          f"{'bf16' if bf16 else 'float32'}; per-unit: pycma diagonal {args.pu_generations}x{args.pu_popsize} "
          f"(tolerances off), then torch Adam, float32 full image")
    best_probe = probe_gflops()
    results = {"args": vars(args), "bf16": bf16, "conditions": {}}
    for name, model, header in conditions(args):
        cond = run_condition(name, model.to(device), generator, args, bf16)
        probes = [c.cpu for i in cond["layers"].values() for s in i["seeds"] for c in s["curves"].values()]
        best_probe = max([best_probe] + probes)
        results["conditions"][name] = cond
        print_condition(cond, header, args, best_probe)
        sys.stdout.flush()
    results["wall_seconds"] = time.perf_counter() - started
    print(f"\nbenchmark wall time {results['wall_seconds']:.0f} s")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "synth_speed.json").write_text(json.dumps(to_json(results), indent=1))
        plot_frontier(results, args.out / "frontier.png", args)
        print(f"written: {args.out / 'synth_speed.json'}, {args.out / 'frontier.png'}")
    summaries = {name: c["summary"] for name, c in results["conditions"].items()}
    if "trained" in summaries and "random" in summaries:
        print("trained: " + final_line(summaries["trained"]))
    primary = "random" if "random" in summaries else next(iter(summaries), None)
    if primary is None:
        return 1
    print(f"final line: {primary}, medians over {args.seeds} seed(s); speedups channel-weighted over "
          f"{'+'.join(args.layers)}, activation_ratio the mean of per-layer ratios")
    print(final_line(summaries[primary]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
