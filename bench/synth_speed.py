#!/usr/bin/env python
"""Prototype-synthesis speed benchmark: every method side by side in one run.

ResNet-18 at 96 px, layers layer1-layer4, one generator and one objective
(ChannelCentre) for all methods:

* ``per-unit``      the seed's "previous" method: pycma (diagonal) one unit at a
                    time, 10 generations x 20, then 50 Adam steps (lr 0.05);
* ``seed-batched``  the seed's batched method: isotropic ES (sigma 2, 30 samples,
                    top 15, log weights), 20 generations, then 50 Adam steps
                    (lr 0.01), batched over the sampled units;
* ``lucent``        lucent's ``render_vis`` one unit at a time (only when
                    torch-lucent is installed);
* ``protoscope``    ``protoscope.synth.engine.synthesize`` on all units.

The baselines run on a sample of units per layer, the engine on all of them
(or, with ``--ours-units``, on a subset that contains the sample); activations
are compared on the units both ran. Every method's final score is recomputed
the same way: the full image through the float32 truncated network, centre
unit of the channel. A unit is silent if that score is <= 0.

The last line of stdout is

    speedup_vs_per_unit=<x> activation_ratio=<ours/per-unit> silent_ours=<f> silent_per_unit=<f>

for the random-init ResNet-18 (see bench/README.md for the formulas).
Progress goes to stderr. Run ``python bench/synth_speed.py --help``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from protoscope.nets.checkpoints import load_into
from protoscope.nets.models import build_model
from protoscope.runtime import bf16_native, resolve_device
from protoscope.synth.cmaes import IsotropicES
from protoscope.synth.engine import EngineConfig, synthesize
from protoscope.synth.generators import make_generator
from protoscope.synth.jobs import layer_forward, layer_units, pre_activation
from protoscope.synth.objectives import ChannelCentre, centre_index

LAYERS = ("layer1", "layer2", "layer3", "layer4")
METHODS = ("per-unit", "seed-batched", "lucent", "protoscope")
EVAL_BATCH = 128  # images per no-grad forward for the baselines and the final re-scoring


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@dataclass
class Run:
    """One method on one set of units of one layer."""

    method: str
    units: list[int]
    seconds: float  # wall time for all of `units` (per-unit: the sum over units)
    scores: list[float]  # final float32 score per unit, full-image forward
    flops: float = 0.0  # network FLOPs done (conv/linear; backward = 2x forward)
    phases: dict = field(default_factory=dict)
    note: str = ""

    @property
    def per_unit(self) -> float:
        return self.seconds / max(1, len(self.units))

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores)) if self.scores else math.nan

    @property
    def silent(self) -> float:
        return float(np.mean([s <= 0 for s in self.scores])) if self.scores else math.nan

    @property
    def gflops(self) -> float:
        return self.flops / self.seconds / 1e9 if self.seconds > 0 else math.nan

    def on(self, units: list[int]) -> list[float]:
        where = {u: s for u, s in zip(self.units, self.scores)}
        return [where[u] for u in units]

    def as_dict(self) -> dict:
        return {
            "method": self.method, "units": self.units, "seconds": self.seconds, "seconds_per_unit": self.per_unit,
            "scores": self.scores, "mean_score": self.mean, "silent_fraction": self.silent, "flops": self.flops,
            "gflop_per_s": self.gflops, "phases": self.phases, "note": self.note,
        }


# --------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------


def fwd_bwd_factor(frozen: bool) -> int:
    """FLOPs of one forward+backward in units of the forward's.

    The backward costs about one forward for the input gradients and one more for the weight
    gradients, which are computed only when the network's parameters require grad.
    """
    return 2 if frozen else 3


def forward_flops(forward, generator, device) -> float:
    """conv/linear FLOPs of one image through `forward` (FlopCounterMode, float32)."""
    images = generator(generator.sample(1, device=device))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        forward(images)
    return float(counter.get_total_flops())


@torch.no_grad()
def final_scores(forward, generator, latents: torch.Tensor, units: list[int]) -> list[float]:
    """The one scoring used for every method: full image, float32, no autocast."""
    out = []
    for start in range(0, len(units), EVAL_BATCH):
        z = latents[start : start + EVAL_BATCH].float()
        acts = forward(generator(z))
        out.append(ChannelCentre(units[start : start + EVAL_BATCH])(acts).float().cpu())
    return torch.cat(out).tolist()


@torch.no_grad()
def scores_of(forward, generator, z: torch.Tensor, rows: list[int] | torch.Tensor) -> torch.Tensor:
    rows = torch.as_tensor(rows)
    out = torch.empty(len(z), device=z.device)
    for start in range(0, len(z), EVAL_BATCH):
        part = slice(start, start + EVAL_BATCH)
        out[part] = ChannelCentre(rows[part])(forward(generator(z[part]))).float()
    return out


def warm_up(forward, generator, device, bf16: bool = False) -> None:
    """One small forward+backward so one-time kernel set-up is not billed to a method."""
    z = generator.sample(2, device=device).requires_grad_(True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        out = forward(generator(z))
    out.float().sum().backward()


def adam_path(forward, generator, z0: torch.Tensor, units: list[int], steps: int, lr: float):
    """torch Adam on latents (row i for unit i), float32; returns the best latent seen per row.

    Best over the evaluated iterates (the start and the first `steps - 1` updates),
    the same rule the engine uses.
    """
    z = z0.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    objective = ChannelCentre(units)
    best = torch.full((len(units),), -math.inf, device=z.device)
    best_z = z.detach().clone()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        score = objective(forward(generator(z))).float()
        (-score.sum()).backward()
        with torch.no_grad():
            better = score > best
            best = torch.where(better, score, best)
            best_z[better] = z[better]
        optimizer.step()
    return best_z


# --------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------


def run_per_unit(forward, generator, units, seed, device, flops_fwd, args) -> Run:
    """pycma (CMA_diagonal) for one unit at a time, then 50 Adam steps; float32 throughout."""
    import cma

    latents, times = [], []
    images_fwd = images_fb = 0
    for unit in units:
        start = time.perf_counter()
        rng = torch.Generator().manual_seed(seed * 1_000_003 + unit)
        x0 = generator.sample(1, generator=rng)[0].double().numpy()
        es = cma.CMAEvolutionStrategy(x0, generator.init_std, {
            "CMA_diagonal": True, "popsize": args.pu_popsize, "maxiter": args.pu_generations,
            "seed": seed * 100_003 + unit + 1, "verbose": -9,
        })
        objective = ChannelCentre([unit] * args.pu_popsize)
        while not es.stop():
            candidates = es.ask()
            z = torch.as_tensor(np.asarray(candidates), dtype=torch.float32, device=device)
            with torch.no_grad():
                score = objective(forward(generator(z))).float()
            es.tell(candidates, (-score.double().cpu()).tolist())
            images_fwd += len(candidates)
        z0 = torch.as_tensor(es.result.xbest, dtype=torch.float32, device=device)[None]
        latents.append(adam_path(forward, generator, z0, [unit], args.pu_adam_steps, args.pu_lr))
        images_fb += args.pu_adam_steps
        times.append(time.perf_counter() - start)
    scores = final_scores(forward, generator, torch.cat(latents), units)
    return Run("per-unit", list(units), float(sum(times)), scores,
               flops=flops_fwd * (images_fwd + args.fb_factor * images_fb),
               phases={"seconds_each": times, "images_forward": images_fwd, "images_fwd_bwd": images_fb})


def run_seed_batched(forward, generator, units, seed, device, flops_fwd, args) -> Run:
    """The seed's batched method: IsotropicES (sigma 2, 30 samples, top 15) x 20, then Adam lr 0.01."""
    start = time.perf_counter()
    rng = torch.Generator(device=device).manual_seed(seed)
    es = IsotropicES(generator.sample(len(units), generator=rng, device=device), sigma=2.0, popsize=30, generator=rng)
    rows = torch.as_tensor(units).repeat_interleave(30)
    for _ in range(args.sb_generations):
        candidates = es.ask()
        fitness = -scores_of(forward, generator, candidates.reshape(-1, generator.latent_dim), rows)
        es.tell(candidates, fitness.view(len(units), 30))
    search = time.perf_counter() - start
    latents = adam_path(forward, generator, es.best_x, list(units), args.sb_adam_steps, args.sb_lr)
    seconds = time.perf_counter() - start
    scores = final_scores(forward, generator, latents, units)
    images_fwd, images_fb = args.sb_generations * 30 * len(units), args.sb_adam_steps * len(units)
    return Run("seed-batched", list(units), seconds, scores, flops=flops_fwd * (images_fwd + args.fb_factor * images_fb),
               phases={"search_seconds": search, "adam_seconds": seconds - search,
                       "images_forward": images_fwd, "images_fwd_bwd": images_fb})


def lucent_available() -> bool:
    try:
        import lucent.optvis.render  # noqa: F401
    except Exception:
        return False
    return True


def run_lucent(model, layer, forward, generator, units, seed, device, flops_fwd, args, shape) -> Run:
    """lucent's render_vis one unit at a time, on our generator (as its param_f) and centre unit."""
    from lucent.optvis import objectives, render

    import inspect

    y, x = centre_index(shape[0], shape[1])
    # lucent >= 0.1.8 can keep the image size; older versions upsample anything under 224 px to 224
    fixed = "fixed_image_size" in inspect.signature(render.render_vis).parameters
    size_option = {"fixed_image_size": generator.image_size} if fixed else {}
    latents, times = [], []
    for unit in units:
        start = time.perf_counter()
        rng = torch.Generator().manual_seed(seed * 1_000_003 + unit)
        z = generator.sample(1, generator=rng).to(device).requires_grad_(True)
        render.render_vis(model, objectives.neuron(layer, unit, x=x, y=y), lambda: ([z], lambda: generator(z)),
                          thresholds=(args.lucent_steps,), transforms=[], preprocess=True, show_image=False,
                          progress=False, **size_option)
        latents.append(z.detach())
        times.append(time.perf_counter() - start)
    scores = final_scores(forward, generator, torch.cat(latents), units)
    return Run("lucent", list(units), float(sum(times)), scores, flops=flops_fwd * args.fb_factor * args.lucent_steps * len(units),
               phases={"seconds_each": times},
               note="lucent Adam lr 0.05, no transforms" + ("" if fixed else "; this lucent upsamples to 224 px"))


def run_ours(model, layer, generator, units, seed, device, config, bf16, crop, plans, full_forward,
             name="protoscope", channels_last=True, pre_search=True) -> Run:
    """The engine on `units`; the crop plan (architecture only, computed once per layer) is not timed."""
    key = (id(model), layer)
    if crop and key not in plans:
        _, plans[key] = layer_forward(model, layer, generator.image_size, True)
    forward, plan = layer_forward(model, layer, generator.image_size, crop, plans[key] if crop else None,
                                  channels_last=channels_last)
    search = pre_activation(model, layer, forward, generator.image_size, plan) if pre_search else None
    flops_fwd = forward_flops(forward, generator, device)
    # the engine runs the network channels-last, as `evolve` does; the baselines keep NCHW
    model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    try:
        warm_up(forward, generator, device, bf16)
        start = time.perf_counter()
        result = synthesize(forward, generator, ChannelCentre(units), seed=seed, config=config, device=device, bf16=bf16,
                            search_forward=search)
        seconds = time.perf_counter() - start
    finally:
        model.to(memory_format=torch.contiguous_format)
    stats = dict(result.stats)
    scores = final_scores(full_forward, generator, result.latent.to(device), units)
    pool_images = config.pool_size
    phase_flops = {
        "pool": flops_fwd * pool_images,
        "cma": flops_fwd * stats.get("cma_evaluations", 0),
        # the engine asks autograd for the latents' gradients only: backward ~ 1x forward
        "adam": 2 * flops_fwd * stats.get("adam_images", 0),
        "final": flops_fwd * len(units),
    }
    for phase, flops in phase_flops.items():
        secs = stats.get(f"{phase}_seconds", 0.0)
        stats[f"{phase}_gflop_per_s"] = flops / secs / 1e9 if secs > 0 else None
    stats["flops_forward_per_image"] = flops_fwd
    stats["crop"] = None if plan is None else [plan.y0, plan.y1, plan.x0, plan.x1]
    stats["engine_scores_mean"] = float(result.score.mean())
    stats["max_abs_diff_engine_vs_recomputed"] = float((result.score - torch.tensor(scores)).abs().max())
    return Run(name, list(units), seconds, scores, flops=sum(phase_flops.values()), phases=stats)


# --------------------------------------------------------------------------
# Machine
# --------------------------------------------------------------------------


def probe_gflops(device) -> float:
    """A short float32 conv (~2 GFLOP), median of 3: how much CPU this process gets right now."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).to(device).eval().requires_grad_(False)
    x = torch.randn(8, 64, 56, 56, device=device)
    times = []
    with torch.no_grad():
        conv(x)
        for _ in range(3):
            start = time.perf_counter()
            conv(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return 2 * 64 * 64 * 9 * 56 * 56 * 8 / float(np.median(times)) / 1e9


def probed(device, fn, *a, **kw) -> Run:
    """Run a method between two load probes; the probes go into run.phases."""
    before = probe_gflops(device)
    run = fn(*a, **kw)
    run.phases["probe_gflop_per_s"] = [before, probe_gflops(device)]
    return run


def machine_conv_gflops(device, repeats: int = 3) -> dict:
    """A 64->64 3x3 conv at 56x56, batch 64: float32 and bf16 autocast, best of `repeats`."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).to(device).eval().requires_grad_(False)
    x = torch.randn(64, 64, 56, 56, device=device)
    flops = 2 * 64 * 64 * 9 * 56 * 56 * 64
    out = {}
    for name, bf16 in (("float32", False), ("bf16", True)):
        best = math.inf
        for i in range(repeats + 1):
            start = time.perf_counter()
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                conv(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i:
                best = min(best, time.perf_counter() - start)
        out[name] = flops / best / 1e9
    return out


# --------------------------------------------------------------------------
# Per condition
# --------------------------------------------------------------------------


def sample_units(channels: int, n: int, seed: int) -> list[int]:
    order = torch.randperm(channels, generator=torch.Generator().manual_seed(seed)).tolist()
    return order if n <= 0 or n >= channels else order[:n]


def run_condition(name, model, args, device, generator, config, bf16, machine) -> dict:
    # Frozen (as `evolve` runs it): no method spends time on weight gradients. With --no-freeze
    # the baselines' backward passes also compute them, as the seed's code did; the engine asks
    # for the latents' gradients only either way.
    model.to(device).eval().requires_grad_(not args.freeze)
    size = generator.image_size
    channels = layer_units(model, list(args.layers), size)
    with torch.no_grad():
        from protoscope.nets.layers import truncate
        shapes = {k: tuple(v.shape[2:]) for k, v in truncate(model, list(args.layers))(torch.zeros(1, 3, size, size, device=device)).items()}
    plans: dict = {}
    layers = {}
    for layer in args.layers:
        C = channels[layer]
        order = sample_units(C, 0, args.seed + 17)
        sample = sorted(order[: min(args.samples, C)])
        ours_units = sorted(order if args.ours_units <= 0 else order[: max(min(args.ours_units, C), len(sample))])
        full_forward, _ = layer_forward(model, layer, size, crop=False, channels_last=False)
        flops_full = forward_flops(full_forward, generator, device)
        runs: dict[str, Run] = {}
        log(f"[{name}] {layer}: {C} channels, output {shapes[layer]}, sample {sample}, ours on {len(ours_units)} units")
        if "per-unit" in args.methods:
            warm_up(full_forward, generator, device)
            runs["per-unit"] = probed(device, run_per_unit, full_forward, generator, sample, args.seed, device, flops_full, args)
            log(f"  per-unit      {runs['per-unit'].per_unit:7.3f} s/unit  mean {runs['per-unit'].mean:.3f}")
        if "seed-batched" in args.methods:
            warm_up(full_forward, generator, device)
            runs["seed-batched"] = probed(device, run_seed_batched, full_forward, generator, sample, args.seed, device, flops_full, args)
            log(f"  seed-batched  {runs['seed-batched'].per_unit:7.3f} s/unit  mean {runs['seed-batched'].mean:.3f}")
        if "lucent" in args.methods:
            if lucent_available():
                try:
                    warm_up(full_forward, generator, device)
                    runs["lucent"] = probed(device, run_lucent, model, layer, full_forward, generator, sample, args.seed, device,
                                                flops_full, args, shapes[layer])
                    log(f"  lucent        {runs['lucent'].per_unit:7.3f} s/unit  mean {runs['lucent'].mean:.3f}")
                except Exception as err:  # an optional baseline must not sink the benchmark
                    log(f"  lucent failed: {type(err).__name__}: {err}")
        if "protoscope" in args.methods:
            runs["protoscope"] = probed(device, run_ours, model, layer, generator, ours_units, args.seed, device, config, bf16,
                                          args.crop, plans, full_forward)
            r = runs["protoscope"]
            log(f"  protoscope    {r.per_unit:7.3f} s/unit  mean {r.mean:.3f}  ({r.seconds:.1f} s for {len(r.units)} units)")
        layers[layer] = {"channels": C, "output_shape": list(shapes[layer]), "sample": sample,
                         "flops_forward_full": flops_full, "runs": runs}

    ablations = {}
    if "protoscope" in args.methods:
        for layer in [l for l in args.ablate if l in layers]:
            ablations[layer] = run_ablations(name, model, layer, layers[layer], generator, config, bf16, plans,
                                             device, args)
    return {"name": name, "layers": layers, "ablations": ablations}


def run_ablations(name, model, layer, info, generator, config, bf16, plans, device, args) -> dict:
    """Engine defaults vs one technique switched off at a time, on the units ours ran."""
    base = info["runs"]["protoscope"]
    units = base.units
    full_forward, _ = layer_forward(model, layer, generator.image_size, crop=False, channels_last=False)
    has_crop = layer_forward(model, layer, generator.image_size, True, plans.get((id(model), layer), "auto"))[1] is not None
    variants = [
        ("shared pool", "pool_size=1 (one random start for all units)", dict(config=replace(config, pool_size=1))),
        ("CMA-ES for silent", "cma_generations=0 (Adam only)", dict(config=replace(config, cma_generations=0)))
        if config.cma_generations else None,
        ("early exit", f"patience={config.adam_steps + 1} (never exit)", dict(config=replace(config, patience=config.adam_steps + 1))),
        ("backtracking", "backtrack=False (steps on after overshooting)", dict(config=replace(config, backtrack=False)))
        if config.backtrack else None,
        ("bf16", "float32 network", dict(bf16=False)) if bf16 else None,
        ("input cropping", "crop=False (full image)", dict(crop=False)) if args.crop and has_crop else None,
        ("channels-last", "NCHW layout", dict(channels_last=False)),
        ("pre-ReLU search", "pool and CMA-ES score after the ReLU", dict(pre_search=False)),
    ]
    rows = [{"technique": "(engine as configured)", "without": "-", "run": base}]
    na = []
    if not config.cma_generations:
        na.append({"technique": "CMA-ES for silent", "without": "n/a: cma_generations=0 in this config", "run": None})
    if not bf16:
        na.append({"technique": "bf16", "without": "n/a: this run is float32 already", "run": None})
    if not has_crop:
        na.append({"technique": "input cropping", "without": "n/a: the receptive field covers the image", "run": None})
    elif not args.crop:
        na.append({"technique": "input cropping", "without": "n/a: this run does not crop", "run": None})
    for variant in variants:
        if variant is None:
            continue
        technique, without, change = variant
        kwargs = dict(config=config, bf16=bf16, crop=args.crop, channels_last=True, pre_search=True) | change
        log(f"[{name}] ablation {layer}: without {technique} ({without})")
        run = probed(device, run_ours, model, layer, generator, units, args.seed, device, kwargs["config"],
                     kwargs["bf16"], kwargs["crop"], plans, full_forward, name=f"without {technique}",
                     channels_last=kwargs["channels_last"], pre_search=kwargs["pre_search"])
        rows.append({"technique": technique, "without": without, "run": run})
    return {"units": len(units), "rows": rows + na}


# --------------------------------------------------------------------------
# Aggregation and printing
# --------------------------------------------------------------------------


def fmt(x, spec=".3f") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return format(x, spec)


def summarize(cond: dict) -> dict:
    """Aggregates over the layers (formulas in bench/README.md)."""
    layers = cond["layers"]
    have = [l for l, info in layers.items() if "per-unit" in info["runs"] and "protoscope" in info["runs"]]
    out: dict = {"layers": have}
    if not have:
        return out
    per_unit_total = sum(layers[l]["runs"]["per-unit"].per_unit * layers[l]["channels"] for l in have)
    ours_total = sum(layers[l]["runs"]["protoscope"].per_unit * layers[l]["channels"] for l in have)
    ratios, ours_pool, pu_pool = [], [], []
    for l in have:
        info = layers[l]
        pu = info["runs"]["per-unit"]
        ours = info["runs"]["protoscope"].on(info["sample"])
        ours_pool += ours
        pu_pool += pu.scores
        if pu.mean > 0:
            ratios.append(float(np.mean(ours)) / pu.mean)
    weights = [layers[l]["channels"] for l in have]
    out.update(
        per_unit_seconds_all_units=per_unit_total,
        ours_seconds_all_units=ours_total,
        speedup_vs_per_unit=per_unit_total / ours_total,
        activation_ratio=float(np.mean(ratios)) if ratios else math.nan,
        activation_ratio_layers=len(ratios),
        activation_ratio_pooled=float(np.mean(ours_pool) / np.mean(pu_pool)) if np.mean(pu_pool) > 0 else math.nan,
        silent_ours=float(np.average([layers[l]["runs"]["protoscope"].silent for l in have], weights=weights)),
        silent_per_unit=float(np.average([layers[l]["runs"]["per-unit"].silent for l in have], weights=weights)),
        silent_ours_on_sample=float(np.average(
            [np.mean([s <= 0 for s in layers[l]["runs"]["protoscope"].on(layers[l]["sample"])]) for l in have],
            weights=weights)),
    )
    ours_all = [l for l, info in layers.items() if "protoscope" in info["runs"]]
    measured = all(len(layers[l]["runs"]["protoscope"].units) == layers[l]["channels"] for l in ours_all)
    whole = sum(layers[l]["runs"]["protoscope"].per_unit * layers[l]["channels"] for l in ours_all)
    units = sum(layers[l]["channels"] for l in ours_all)
    out["whole"] = {"layers": ours_all, "units": units, "seconds": whole, "prototypes_per_s": units / whole,
                    "measured": measured}
    return out


def cpu_share(run: Run | None, reference: float) -> float:
    probes = (run.phases.get("probe_gflop_per_s") if run else None) or []
    return 100 * float(np.mean(probes)) / reference if probes and reference > 0 else math.nan


def cpu_cell(share: float) -> str:
    return "-" if not math.isfinite(share) else f"{share:.0f}{'!' if share < CONTENDED else ''}"


CONTENDED = 70  # % of the best load probe below which a row is marked contended


def all_runs(cond: dict):
    for info in cond["layers"].values():
        yield from info["runs"].values()
    for ab in cond["ablations"].values():
        yield from (row["run"] for row in ab["rows"] if row["run"] is not None)


def print_condition(cond: dict, machine: dict, header: str, args) -> None:
    reference = max([machine["probe"]] + [p for r in all_runs(cond) for p in r.phases.get("probe_gflop_per_s", [])])
    contended = False
    print()
    print(header)
    cols = f"{'layer':<7} {'C':>4} {'method':<13} {'units':>5} {'s/unit':>8} {'act(sample)':>11} {'act(run)':>9} " \
           f"{'silent':>6} {'GFLOP/s':>8} {'cpu%':>5} {'speed x':>8} {'act x':>6}"
    print(cols)
    print("-" * len(cols))
    for layer, info in cond["layers"].items():
        runs = info["runs"]
        ref = runs.get("per-unit")
        first = True
        for method in METHODS:
            if method not in runs:
                continue
            r = runs[method]
            on_sample = float(np.mean(r.on(info["sample"])))
            speed = ref.per_unit / r.per_unit if ref else math.nan
            act = on_sample / ref.mean if ref and ref.mean > 0 else math.nan
            share = cpu_share(r, reference)
            print(f"{layer if first else '':<7} {info['channels'] if first else '':>4} {method:<13} {len(r.units):>5} "
                  f"{fmt(r.per_unit):>8} {fmt(on_sample):>11} {fmt(r.mean):>9} {fmt(r.silent, '.2f'):>6} "
                  f"{fmt(r.gflops, '.1f'):>8} {cpu_cell(share):>5} {fmt(speed, '.1f'):>8} {fmt(act, '.2f'):>6}")
            first = False
            contended |= share < CONTENDED
    partial = [(l, len(i["runs"]["protoscope"].units), i["channels"]) for l, i in cond["layers"].items()
               if "protoscope" in i["runs"] and len(i["runs"]["protoscope"].units) < i["channels"]]
    if partial:
        print("note: ours ran on " + ", ".join(f"{k} of {c} units of {l}" for l, k, c in partial)
              + "; the shared pool is paid by those units only, so its s/unit is higher than on a whole layer")
    print()
    print(f"machine conv (64->64 3x3, 56x56, batch 64): float32 {machine['float32']:.1f} GFLOP/s, "
          f"bf16 autocast {machine['bf16']:.1f} GFLOP/s")
    print(f"{'engine phases':<14} {'layer':<7} {'crop':>12} {'MFLOP/img':>9} {'pool s':>7} {'silent@pool':>11} "
          f"{'cma s':>6} {'cma evals':>9} {'adam s':>7} {'adam imgs':>9} {'adam GFLOP/s':>12} {'all GFLOP/s':>11}")
    for layer, info in cond["layers"].items():
        r = info["runs"].get("protoscope")
        if r is None:
            continue
        p = r.phases
        crop = "none" if p["crop"] is None else f"{p['crop'][1] - p['crop'][0]}x{p['crop'][3] - p['crop'][2]}"
        print(f"{'':<14} {layer:<7} {crop:>12} {p['flops_forward_per_image'] / 1e6:9.0f} {p['pool_seconds']:7.2f} "
              f"{p['silent_after_pool']:>11} {p['cma_seconds']:6.2f} {p['cma_evaluations']:>9} {p['adam_seconds']:7.2f} "
              f"{p['adam_images']:>9} {fmt(p['adam_gflop_per_s'], '.1f'):>12} {fmt(r.gflops, '.1f'):>11}")
    for layer, ab in cond["ablations"].items():
        print()
        print(f"what each technique buys — {layer}, {ab['units']} units, side by side "
              f"(time x = time without / time with; act x = mean act with / without)")
        head = (f"{'technique':<22} {'variant':<44} {'seconds':>8} {'s/unit':>7} {'mean act':>8} {'silent':>6} "
                f"{'cpu%':>5} {'time x':>7} {'act x':>6}")
        print(head)
        print("-" * len(head))
        base = ab["rows"][0]["run"]
        for row in ab["rows"]:
            r = row["run"]
            if r is None:
                print(f"{row['technique']:<22} {row['without']:<44}")
                continue
            time_x = r.seconds / base.seconds
            act_x = base.mean / r.mean if r.mean > 0 else math.nan
            share = cpu_share(r, reference)
            contended |= share < CONTENDED
            print(f"{row['technique']:<22} {row['without']:<44} {r.seconds:8.2f} {r.per_unit:7.3f} {fmt(r.mean):>8} "
                  f"{fmt(r.silent, '.2f'):>6} {cpu_cell(share):>5} {fmt(time_x, '.2f'):>7} {fmt(act_x, '.2f'):>6}")
    if contended:
        print()
        print(f"! cpu% < {CONTENDED}: another process took CPU while that row ran (load probe before/after, vs the best "
              f"probe of the run, {reference:.0f} GFLOP/s); its seconds, and the ratios built on them, are inflated")
    s = cond["summary"]
    if "whole" in s:
        w = s["whole"]
        how = "measured" if w["measured"] else "extrapolated from the units ours ran (s/unit x channels)"
        print()
        print(f"whole checkpoint ({'+'.join(w['layers'])}, {w['units']} units, one repeat): {w['seconds']:.1f} s, "
              f"{w['prototypes_per_s']:.2f} prototypes/s ({how})")
    if "speedup_vs_per_unit" in s:
        print(f"aggregate over {'+'.join(s['layers'])}: per-unit would take {s['per_unit_seconds_all_units']:.1f} s "
              f"for all units, ours {s['ours_seconds_all_units']:.1f} s -> speedup {s['speedup_vs_per_unit']:.2f}x; "
              f"activation ratio = mean over {s['activation_ratio_layers']} layers of (ours mean / per-unit mean on "
              f"the sampled units) {s['activation_ratio']:.3f} (pooled over units: {s['activation_ratio_pooled']:.3f}); "
              f"silent (channel-weighted) ours {s['silent_ours']:.3f} on all units run "
              f"({s['silent_ours_on_sample']:.3f} on the sample), per-unit {s['silent_per_unit']:.3f}")


def final_line(summary: dict) -> str:
    def g(key):
        value = summary.get(key, math.nan)
        return f"{value:.4g}" if math.isfinite(value) else "nan"

    return (f"speedup_vs_per_unit={g('speedup_vs_per_unit')} activation_ratio={g('activation_ratio')} "
            f"silent_ours={g('silent_ours')} silent_per_unit={g('silent_per_unit')}")


def to_json(value):
    if isinstance(value, Run):
        return value.as_dict()
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    defaults = EngineConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small sample (4 units per layer for the baselines; ours on all units), random init only unless "
                        "--checkpoint, ablations on layer1 and layer3; < 10 min on 2 CPU cores")
    p.add_argument("--samples", type=int, default=None, help="units per layer for the per-unit baselines (quick 4, full 16)")
    p.add_argument("--ours-units", type=int, default=None,
                   help="units per layer for the engine, a superset of the sample; 0 = all (the default)")
    p.add_argument("--layers", default=",".join(LAYERS), help="comma-separated layers")
    p.add_argument("--ablate", default=None, help="layers for the technique ablations (default layer1,layer3; '' = none)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    p.add_argument("--conditions", default="random,trained", help="random and/or trained")
    p.add_argument("--checkpoint", type=Path, default=None, help="trained checkpoint (safetensors) for the 'trained' condition")
    p.add_argument("--width", type=float, default=1.0, help="width multiplier of the checkpoint's ResNet-18")
    p.add_argument("--small-input", action="store_true", help="the checkpoint's ResNet-18 has the small-image stem")
    p.add_argument("--generator", default="pixel", choices=["pixel", "fourier"],
                   help="pixel: 16x16x3 latent upsampled to 96 px; fourier: lucid-style low-pass Fourier image")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                   help="engine network precision; auto = bf16 where the device has native bf16 (baselines: float32)")
    p.add_argument("--no-crop", dest="crop", action="store_false", help="engine without input cropping")
    p.add_argument("--no-freeze", dest="freeze", action="store_false",
                   help="leave the network's parameters requiring grad, so the baselines' backward passes also "
                        "compute weight gradients (as the seed's code did); default: frozen for every method")
    g = p.add_argument_group("engine settings (EngineConfig; defaults are the engine's)")
    g.add_argument("--pool", type=int, default=defaults.pool_size, help="shared random pool size")
    g.add_argument("--cma-generations", type=int, default=defaults.cma_generations)
    g.add_argument("--adam-steps", type=int, default=defaults.adam_steps)
    g.add_argument("--lr", type=float, default=defaults.adam_lr, help="engine Adam learning rate")
    g.add_argument("--patience", type=int, default=defaults.patience, help="Adam steps without improvement before exit")
    g.add_argument("--tol", type=float, default=defaults.tol, help="relative improvement that counts for early exit")
    g.add_argument("--batch-size", type=int, default=defaults.batch_size, help="engine images per forward (None: from memory)")
    b = p.add_argument_group("baseline budgets (the seed's values)")
    b.add_argument("--pu-generations", type=int, default=10)
    b.add_argument("--pu-popsize", type=int, default=20)
    b.add_argument("--pu-adam-steps", type=int, default=50)
    b.add_argument("--pu-lr", type=float, default=0.05)
    b.add_argument("--sb-generations", type=int, default=20)
    b.add_argument("--sb-adam-steps", type=int, default=50)
    b.add_argument("--sb-lr", type=float, default=0.01)
    b.add_argument("--lucent-steps", type=int, default=50)
    p.add_argument("--json", type=Path, default=None, help="write all results here")
    args = p.parse_args(argv)
    if args.samples is None:
        args.samples = 4 if args.quick else 16
    if args.ours_units is None:
        args.ours_units = 0  # the engine always runs every unit: its shared pool is amortized over them
    args.layers = [l for l in args.layers.split(",") if l]
    args.ablate = ["layer1", "layer3"] if args.ablate is None else [l for l in args.ablate.split(",") if l]
    args.methods = [m for m in args.methods.split(",") if m]
    for m in args.methods:
        if m not in METHODS:
            p.error(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    args.conditions = [c for c in args.conditions.split(",") if c]
    args.fb_factor = fwd_bwd_factor(frozen=args.freeze)  # the baselines' forward+backward, in forwards
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    device = resolve_device(args.device)
    bf16 = {"auto": bf16_native(device), "bf16": True, "fp32": False}[args.precision]
    config = EngineConfig(pool_size=args.pool, cma_generations=args.cma_generations, adam_steps=args.adam_steps,
                          adam_lr=args.lr, patience=args.patience, tol=args.tol, batch_size=args.batch_size)
    if args.generator == "pixel":
        generator = make_generator("pixel", size=args.image_size, latent_size=16)
    else:
        generator = make_generator("fourier", size=args.image_size)
    generator = generator.to(device)

    print(f"protoscope synthesis benchmark — torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, device {device}")
    print(f"generator {args.generator} (latent {generator.latent_dim}, {args.image_size} px), objective ChannelCentre, "
          f"engine {config}, {'bf16' if bf16 else 'float32'}, crop={args.crop}")
    print("network frozen (requires_grad=False) for every method" if args.freeze else
          "network not frozen (--no-freeze): the baselines also compute weight gradients")
    print(f"baselines on {args.samples} sampled units per layer, ours on "
          f"{'all' if args.ours_units <= 0 else args.ours_units} units per layer{' (quick)' if args.quick else ''}")
    if "lucent" in args.methods and not lucent_available():
        print("lucent: skipped (torch-lucent is not installed)")
    machine = machine_conv_gflops(device)
    machine["probe"] = probe_gflops(device)
    results = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "engine_config": asdict(config),
               "bf16": bf16, "machine_conv_gflop_per_s": machine, "conditions": {}}

    conditions = []
    if "random" in args.conditions:
        torch.manual_seed(args.seed)
        conditions.append(("random", build_model("resnet18"),
                           "random init: torchvision ResNet-18 (width 1), eval mode"))
    if "trained" in args.conditions:
        if args.checkpoint is None:
            print("trained: skipped (no --checkpoint given)")
        else:
            model = build_model("resnet18", width=args.width, small_input=args.small_input)
            load_into(model, args.checkpoint)
            conditions.append(("trained", model, f"trained: ResNet-18 width {args.width:g}"
                               f"{', small-input stem' if args.small_input else ''}, {args.checkpoint}"))
    summaries = {}
    for name, model, header in conditions:
        cond = run_condition(name, model, args, device, generator, config, bf16, machine)
        cond["summary"] = summarize(cond)
        summaries[name] = cond["summary"]
        print_condition(cond, machine, f"== {header} ==", args)
        sys.stdout.flush()
        results["conditions"][name] = cond
    total = time.perf_counter() - started
    print()
    print(f"benchmark wall time {total:.0f} s")
    results["wall_seconds"] = total
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(to_json(results), indent=1))
        print(f"results written to {args.json}")
    primary = "random" if "random" in summaries else "trained"
    if primary == "random" and "speedup_vs_per_unit" in summaries.get("trained", {}):
        print("trained: " + final_line(summaries["trained"]))
    summary = summaries.get(primary, {})
    print(f"final line: {'random-init' if primary == 'random' else 'trained'} ResNet-18, layers "
          f"{'+'.join(summary.get('layers', [])) or 'none'}; activation_ratio = mean over layers of "
          f"(ours / per-unit mean score on the sampled units); speedup and silent fractions weighted by channels")
    print(final_line(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
