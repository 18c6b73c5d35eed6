"""The hybrid engine: a prototype for every unit of a layer in one batched run.

Four phases, all units together, each a function over one `_State` (each unit's
best latent and score so far):

1. **Shared pool** (`_pool`). One set of random latents is rendered and scored
   once; a single forward pass gives every image's response for *every* unit
   (`Objective.score_all`), so each unit starts from its best pool image at the
   cost of a few batches, not one search per unit.
2. **Batched CMA-ES** (`_cma`), only for the units the pool left silent (best
   response ≤ 0): one separable CMA-ES per unit, advanced together
   (`BatchedSepCMA`), each unit leaving the search as soon as it responds. Both
   search phases can score the layer before its final ReLU (`search_forward`):
   behind the ReLU a silent unit scores 0 everywhere and no search gets a signal.
3. **Batched Adam** (`_adam`) on the latents, from each unit's best latent. The
   loss is the negated *sum* of all units' scores: row i's latent only reaches
   row i's score, so the gradient of the sum is each unit's own gradient. A unit
   whose score stops improving leaves the batch (early exit), so later steps
   cost less. Backtracking is optional and **off by default**
   (`EngineConfig.backtrack=False`; see there why): when on, a unit whose step
   lowered its score goes back halfway and halves its own step size.
4. **Rescoring** (`_final`): each unit's best latent rendered once more and
   scored in float32, which is what is reported.

Images go through the network in batches sized to a memory budget. Everything
random comes from one seeded `torch.Generator` (the pool draws first, then
CMA-ES), so a (seed, device) pair always gives the same prototypes. The network
runs under bf16 autocast when asked (the generator stays float32).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from ..runtime import autocast
from .cmaes import BatchedSepCMA, default_popsize
from .generators import Generator
from .objectives import Objective
from .robust import robust_forward

Forward = Callable[[Tensor], Tensor]  # images in [0, 1] -> the layer's activations


@dataclass(frozen=True)
class EngineConfig:
    """Budgets of the three phases. Defaults are what `bench/synth_speed.py` found worth it.

    A few large Adam steps beat many small ones: lr 2 (in units of the
    generator's latent scale). Fast moment decay (betas 0.5, 0.9) lets a step
    follow the gradient's turns as the image saturates: on random-init
    ResNet-18 layer3 it reaches at 32 steps what the usual (0.9, 0.999) reaches
    at about 50. 64 steps with a patience of 8 come close to a per-unit search
    given the seed's full budget and the best of an lr sweep (see
    bench/README.md); 8 are enough for a quick look (the demo). Backtracking
    is off by default: halving a unit's step for good cost activation at
    these budgets on layer1 and layer3. CMA-ES gets a small budget because a unit silent
    after the pool gives it a flat landscape, where it is no better than
    more random samples — a larger `pool_size` is the cheaper way to wake units.
    """

    pool_size: int = 1024
    cma_generations: int = 3
    cma_popsize: int | None = None  # None: CMA-ES's default for the latent size
    cma_sigma: float | None = None  # None: the generator's own initial scale
    adam_steps: int = 64
    adam_lr: float = 2.0  # times generator.init_std: the largest step one coordinate takes
    adam_betas: tuple[float, float] = (0.5, 0.9)  # Adam's moment decay rates
    patience: int = 8  # Adam steps without improvement before a unit exits
    backtrack: bool = False  # a step that lowers a unit's score is halved, and so is its lr
    tol: float = 1e-3  # relative improvement that counts
    batch_size: int | None = None  # images per forward pass; None: as many as memory_gb holds, up to cpu_batch_size
    memory_gb: float = 2.0
    cpu_batch_size: int = 64  # on a CPU, larger batches cost more per image (bench/results/engine_profile_*.txt)
    robust: bool = False  # Adam sees each image slightly moved, scaled and turned (`robust.py`) at every step


@dataclass
class Prototypes:
    """What one run of the engine found, one row per unit."""

    images: Tensor  # uint8 (U, S, S, 3)
    score: Tensor  # float32 (U,), recomputed in float32
    latent: Tensor  # float32 (U, D)
    trace: Tensor  # float32 (U, adam_steps): score at each Adam step, NaN after exit
    silent: Tensor  # bool (U,): no input found that makes the unit respond
    stats: dict = field(default_factory=dict)  # seconds and evaluations per phase


def activation_bytes_per_image(forward: Forward, generator: Generator, device: torch.device, bf16: bool) -> int:
    """Bytes autograd keeps per image for one forward+backward (measured, not guessed)."""
    saved = 0

    def pack(t: Tensor):
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    z = generator.sample(2, device=device).requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        images = generator(z)
        with autocast(device, bf16):
            forward(images).float().sum()
    return max(1, saved // 2)


def pick_batch_size(config: EngineConfig, forward: Forward, generator: Generator, device: torch.device, bf16: bool) -> int:
    """Images per pass: `config.batch_size`, else as many as `memory_gb` holds, and on a CPU at most
    `cpu_batch_size`: there a step's time per image is flat from 16 to 128 images and grows beyond
    (oneDNN's convolutions stop gaining from the batch), while a GPU wants all it can hold."""
    if config.batch_size:
        return config.batch_size
    per_image = activation_bytes_per_image(forward, generator, device, bf16)
    # 3x: saved activations, their gradients, and the forward's transients
    fits = int(max(8, min(4096, config.memory_gb * 2**30 // (3 * per_image))))
    return min(fits, config.cpu_batch_size) if device.type == "cpu" else fits


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _to_uint8(images: Tensor) -> Tensor:
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


@dataclass
class _Run:
    """One `synthesize` call's fixed inputs, resolved once and read by every phase."""

    forward: Forward
    search: Forward  # what the pool and CMA-ES score: `search_forward`, or `forward`
    generator: Generator
    objective: Objective
    config: EngineConfig
    device: torch.device
    bf16: bool
    batch: int  # images per forward pass
    rng: torch.Generator  # the one source of randomness
    report: Callable[[str, int], None]
    adam_forward: Forward  # what Adam climbs: `forward`, behind random small moves when `config.robust`
    starts: Tensor | None = None  # (N, D) latents of natural images, scored with the pool

    def scores(self, z: Tensor, rows: Tensor) -> Tensor:
        """Search scores of latents z, row j scored for unit rows[j]; no gradient, batched."""
        out = torch.empty(len(z), device=self.device)
        with torch.no_grad():
            for part in _batches(len(z), self.batch):
                images = self.generator(z[part])
                with autocast(self.device, self.bf16):
                    acts = self.search(images)
                out[part] = self.objective.select(rows[part])(acts).float()
        return out


@dataclass
class _State:
    """What each phase hands the next: per unit, the best latent and its score so far."""

    best: Tensor  # (U,): search scores, then re-measured along the Adam path
    best_z: Tensor  # (U, D)
    stats: dict
    trace: Tensor | None = None  # (U, adam_steps), filled by the Adam phase


@dataclass
class _Adam:
    """Adam's per-row state, hand-written: torch.optim cannot drop rows, and each row has its own step size."""

    z: Tensor  # (U, D) current latents
    moment1: Tensor
    moment2: Tensor
    steps: Tensor  # (U, 1): Adam steps per row since its last restart
    lr: Tensor  # (U, 1)
    stale: Tensor  # (U,): steps without improvement
    alive: Tensor  # the rows still in the run
    images: int = 0


def synthesize(
    forward: Forward,
    generator: Generator,
    objective: Objective,
    *,
    seed: int = 0,
    config: EngineConfig = EngineConfig(),
    device: torch.device | str = "cpu",
    bf16: bool = False,
    on_phase: Callable[[str, int], None] | None = None,
    search_forward: Forward | None = None,
    on_step: Callable[[int, Tensor, Tensor], None] | None = None,
    starts: Tensor | None = None,
) -> Prototypes:
    """Prototypes for the `objective.rows` units: row i of every batch is scored for unit i.

    `forward` maps images in [0, 1] (N, 3, S, S) to the target layer's
    activations. Only the latents' gradients are computed, never the
    network's. `search_forward`, when given, is what the pool and CMA-ES
    score instead: the layer before its final ReLU (`layer.pre_activation`),
    which still ranks images for a unit the ReLU silences; it must equal
    `forward` wherever that is positive. `on_phase(name, units_left)` reports progress.
    `on_step(k, best_z, best)` sees each unit's best latent after k Adam
    evaluations (k = 0: the search's result), so one run with a large budget
    also tells what every smaller budget would have returned (the steps never
    depend on the budget); `bench/synth_speed.py` draws its frontier from it. `starts`: latents
    of natural images (`generator.encode`), scored with the random pool, so no unit that one of
    them excites is left silent, and no prototype starts below the best of them.
    """
    device = torch.device(device)
    rng = torch.Generator(device=device).manual_seed(int(seed))
    batch = pick_batch_size(config, forward, generator, device, bf16)
    adam_forward = robust_forward(forward, seed=seed) if config.robust else forward
    run = _Run(forward, search_forward or forward, generator, objective, config, device, bf16, batch, rng,
               on_phase or (lambda name, left: None), adam_forward,
               None if starts is None else starts.to(device, torch.float32))
    state = _pool(run)
    _cma(run, state)
    _adam(run, state, on_step)
    return _final(run, state)


def _pool(run: _Run) -> _State:
    """Phase 1: one shared pool of random images (and natural ones, `run.starts`), every image
    scored for every unit."""
    start = time.perf_counter()
    units, device, generator = run.objective.rows, run.device, run.generator
    state = _State(best=torch.full((units,), -math.inf, device=device),
                   best_z=torch.zeros(units, generator.latent_dim, device=device), stats={"batch_size": run.batch})
    with torch.no_grad():
        for part in _batches(run.config.pool_size, run.batch):
            _pool_batch(run, state, generator.sample(part.stop - part.start, generator=run.rng, device=device))
        state.stats["silent_after_random_pool"] = int((state.best <= 0).sum())
        if run.starts is not None:
            for part in _batches(len(run.starts), run.batch):
                _pool_batch(run, state, run.starts[part])
    state.stats["pool_seconds"] = time.perf_counter() - start
    state.stats["silent_after_pool"] = int((state.best <= 0).sum())
    run.report("pool", units)
    return state


def _pool_batch(run: _Run, state: _State, z: Tensor) -> None:
    """Score latents `z` for every unit; keep each unit's best."""
    with autocast(run.device, run.bf16):
        acts = run.search(run.generator(z))
    top, index = run.objective.score_all(acts).float().max(dim=0)
    better = top > state.best
    state.best = torch.where(better, top, state.best)
    state.best_z[better] = z[index[better]]


def _cma(run: _Run, state: _State) -> None:
    """Phase 2: CMA-ES for the units the pool left silent."""
    start = time.perf_counter()
    silent = (state.best <= 0).nonzero().flatten()
    evaluations = 0
    if len(silent) and run.config.cma_generations:
        evaluations = _cma_search(run, state, silent)
    state.stats["cma_seconds"] = time.perf_counter() - start
    state.stats["cma_evaluations"] = evaluations
    state.stats["cma_units"] = len(silent)


def _cma_search(run: _Run, state: _State, silent: Tensor) -> int:
    """One sep-CMA-ES per silent unit, advanced together until each responds; returns the evaluations."""
    config, latent_dim = run.config, run.generator.latent_dim
    popsize = config.cma_popsize or default_popsize(latent_dim)
    sigma = config.cma_sigma or run.generator.init_std
    es = BatchedSepCMA(state.best_z[silent].clone(), sigma, popsize, generator=run.rng)
    rows = silent.repeat_interleave(popsize)
    searching = torch.ones(len(silent), dtype=torch.bool, device=run.device)
    evaluations = 0
    for _ in range(config.cma_generations):
        candidates = es.ask()
        fitness = -run.scores(candidates.reshape(-1, latent_dim), rows).view(len(silent), popsize)
        evaluations += fitness.numel()
        es.tell(candidates, fitness, active=searching)
        searching &= es.best_f >= 0  # still no positive response
        run.report("cma", int(searching.sum()))
        if not searching.any():
            break
    found = -es.best_f
    better = found > state.best[silent]
    state.best[silent[better]] = found[better]
    state.best_z[silent[better]] = es.best_x[better]
    return evaluations


def _adam(run: _Run, state: _State, on_step: Callable[[int, Tensor, Tensor], None] | None) -> None:
    """Phase 3: batched Adam from each unit's best latent, with early exit."""
    start = time.perf_counter()
    config, units, device = run.config, run.objective.rows, run.device
    z = state.best_z.clone()
    state.best = torch.full((units,), -math.inf, device=device)  # re-measured along the Adam path
    adam = _Adam(z, torch.zeros_like(z), torch.zeros_like(z), steps=torch.zeros(units, 1, device=device),
                 lr=torch.full((units, 1), config.adam_lr * run.generator.init_std, device=device),
                 stale=torch.zeros(units, dtype=torch.int64, device=device), alive=torch.arange(units, device=device))
    state.trace = torch.full((units, config.adam_steps), math.nan)
    if on_step:
        on_step(0, state.best_z, state.best)
    for step in range(config.adam_steps):
        if not len(adam.alive):
            break
        grad, score = _adam_gradients(run, adam.z, adam.alive)
        adam.images += len(adam.alive)
        state.trace[adam.alive.cpu(), step] = score.cpu()
        _adam_step(run.config, state, adam, grad, score)
        run.report("adam", len(adam.alive))
        if on_step:
            on_step(step + 1, state.best_z, state.best)
    state.stats["adam_seconds"] = time.perf_counter() - start
    state.stats["adam_images"] = adam.images


def _adam_gradients(run: _Run, z: Tensor, alive: Tensor) -> tuple[Tensor, Tensor]:
    """Scores of the alive rows' latents and their gradients (for the latents only, never the weights)."""
    grad = torch.empty(len(alive), run.generator.latent_dim, device=run.device)
    score = torch.empty(len(alive), device=run.device)
    for part in _batches(len(alive), run.batch):
        zb = z[alive[part]].clone().requires_grad_(True)
        images = run.generator(zb)  # float32: generators are cheap, and FFTs gain nothing from bf16
        with autocast(run.device, run.bf16):
            s = run.objective.select(alive[part])(run.adam_forward(images)).float()
        (grad[part],) = torch.autograd.grad(-s.sum(), zb)
        score[part] = s.detach()
    return grad, score


def _adam_step(config: EngineConfig, state: _State, adam: _Adam, grad: Tensor, score: Tensor) -> None:
    """Record the alive rows' scores, move their latents, and drop the rows that are done."""
    alive = adam.alive
    previous = state.best[alive]
    improved = ~torch.isfinite(previous) | (score > previous + config.tol * previous.abs().clamp_min(1e-6))
    better = score > state.best[alive]
    # the last step lowered the score: its gradient is from the wrong side of the peak
    worse = (score < previous) if config.backtrack else torch.zeros_like(better)
    state.best_z[alive[better]] = adam.z[alive[better]]
    state.best[alive] = torch.maximum(state.best[alive], score)
    adam.stale[alive] = torch.where(improved, 0, adam.stale[alive] + 1)
    _adam_move(config, adam, state.best_z, grad, worse)
    # a row with an all-zero gradient at its best (a silent unit behind a ReLU) cannot move:
    # it leaves now; one that fell silent by overshooting has just stepped back
    moving = (grad.abs().amax(dim=1) > 0) | worse
    adam.alive = alive[(adam.stale[alive] < config.patience) & moving]


def _adam_move(config: EngineConfig, adam: _Adam, best_z: Tensor, grad: Tensor, worse: Tensor) -> None:
    """An Adam step for the alive rows; the `worse` ones step back instead (backtracking)."""
    (beta1, beta2), eps = config.adam_betas, 1e-8
    step_rows, back_rows = adam.alive[~worse], adam.alive[worse]
    g = grad[~worse]
    t = adam.steps[step_rows] = adam.steps[step_rows] + 1
    m = adam.moment1[step_rows] = beta1 * adam.moment1[step_rows] + (1 - beta1) * g
    v = adam.moment2[step_rows] = beta2 * adam.moment2[step_rows] + (1 - beta2) * g * g
    update = adam.lr[step_rows] * (m / (1 - beta1**t)) / ((v / (1 - beta2**t)).sqrt() + eps)
    adam.z[step_rows] = adam.z[step_rows] - update  # descent on the loss (-score)
    # halfway back towards the best latent, where Adam restarts with half the step size
    # (its momentum points past the peak)
    adam.z[back_rows] = 0.5 * (adam.z[back_rows] + best_z[back_rows])
    adam.lr[back_rows] *= 0.5
    adam.moment1[back_rows], adam.moment2[back_rows], adam.steps[back_rows] = 0.0, 0.0, 0


def _final(run: _Run, state: _State) -> Prototypes:
    """Phase 4: the best latent per unit, rendered and scored in float32."""
    start = time.perf_counter()
    units, device, generator = run.objective.rows, run.device, run.generator
    score = torch.empty(units, device=device)
    images = torch.empty(units, 3, generator.image_size, generator.image_size, device=device)
    with torch.no_grad():
        for part in _batches(units, run.batch):
            images[part] = generator(state.best_z[part])
            rows = torch.arange(part.start, part.stop, device=device)
            score[part] = run.objective.select(rows)(run.forward(images[part])).float()
    state.stats["final_seconds"] = time.perf_counter() - start
    return Prototypes(
        images=_to_uint8(images).cpu(),
        score=score.cpu(),
        latent=state.best_z.float().cpu(),
        trace=state.trace,
        silent=(score <= 0).cpu(),
        stats=state.stats,
    )
