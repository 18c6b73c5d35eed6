"""Tests for the batched sep-CMA-ES, with pycma as an independent reference.

The comparison tests run K independent problems in one `BatchedSepCMA` and the
same K problems, from the same starts, one by one in pycma with
``CMA_diagonal=True`` and the same population size, for the same number of
generations, and compare the median of log10(best f). Tolerances were
calibrated over 12 seeds (see `TOL` below); every run is seeded, so the
tests are deterministic. `test_criterion_has_teeth` checks that crippled
variants (no step-size adaptation, no covariance learning) fail the very same
criterion, so a broken adaptation would be caught.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import pytest
import torch

import cma
from protoscope.synth.cmaes import BatchedSepCMA, IsotropicES, default_popsize, log_weights

SEED = 0


# --- test functions, torch (batched, float64 inside) and numpy (one point) ---


def _ellipsoid_coeffs(n: int) -> np.ndarray:
    return 1e4 ** (np.arange(n) / (n - 1))


def sphere_t(x: torch.Tensor) -> torch.Tensor:
    return x.double().square().sum(-1)


def ellipsoid_t(x: torch.Tensor) -> torch.Tensor:
    c = torch.from_numpy(_ellipsoid_coeffs(x.shape[-1]))
    return (c * x.double().square()).sum(-1)


def rosenbrock_t(x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    return (100 * (x[..., 1:] - x[..., :-1] ** 2) ** 2 + (1 - x[..., :-1]) ** 2).sum(-1)


def sphere_np(x: np.ndarray) -> float:
    return float(np.sum(x**2))


def ellipsoid_np(x: np.ndarray) -> float:
    return float(np.sum(_ellipsoid_coeffs(len(x)) * x**2))


def rosenbrock_np(x: np.ndarray) -> float:
    return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


# name: (torch fn, numpy fn, n, K problems, generations, start half-width, start offset, sigma0)
CASES: dict[str, tuple] = {
    "sphere": (sphere_t, sphere_np, 20, 16, 100, 3.0, 0.0, 2.0),
    "ellipsoid": (ellipsoid_t, ellipsoid_np, 10, 16, 120, 3.0, 0.0, 2.0),
    "rosenbrock": (rosenbrock_t, rosenbrock_np, 10, 8, 1000, 0.5, 0.0, 0.5),
}

# Allowed excess of our median log10(best f) over pycma's, in orders of magnitude.
# Measured (ours - pycma, seeds 0..11, configuration above):
#   sphere      -0.18 .. +0.24 (mean +0.02)
#   ellipsoid   +0.77 .. +1.66 (mean +1.13): pycma's sep mode uses *active* CMA
#               (negative weights), which learns the diagonal faster; pycma
#               with CMA_active=False is 1.0 .. 2.1 orders *worse* than ours.
#   rosenbrock  -0.32 .. -0.03 (mean -0.19, ours slightly ahead)
TOL = {"sphere": 0.75, "ellipsoid": 2.0, "rosenbrock": 0.3}
# How far beyond the tolerance a crippled variant must land (test_criterion_has_teeth).
# Measured excess over pycma without CSA: sphere >= 3.3, ellipsoid >= 3.4,
# rosenbrock >= 0.58; without covariance learning: ellipsoid >= 5.6.
TEETH_MARGIN = 0.2


def _starts(name: str, seed: int) -> tuple[np.ndarray, float]:
    _, _, n, k, _, half, offset, sigma0 = CASES[name]
    rng = np.random.default_rng(seed)
    return offset + rng.uniform(-half, half, size=(k, n)), sigma0


def run_ours(
    name: str,
    seed: int = SEED,
    tweak: Callable[[BatchedSepCMA], None] | None = None,
) -> float:
    """Median log10(best f) of K problems solved together in one BatchedSepCMA."""
    fn, _, _, _, gens, _, _, _ = CASES[name]
    x0, sigma0 = _starts(name, seed)
    es = BatchedSepCMA(
        torch.tensor(x0, dtype=torch.float32),
        sigma0,
        generator=torch.Generator().manual_seed(seed),
    )
    if tweak is not None:
        tweak(es)
    for _ in range(gens):
        x = es.ask()
        es.tell(x, fn(x).float())
    assert torch.isfinite(es.best_f).all()
    return float(np.median(np.log10(es.best_f.double().numpy())))


@lru_cache(maxsize=None)
def run_pycma(name: str, seed: int = SEED, active: bool = True) -> float:
    """Median log10(best f) of pycma sep-CMA-ES on the same starts and budget."""
    _, fn, n, _, gens, _, _, _ = CASES[name]
    x0, sigma0 = _starts(name, seed)
    opts = {
        "CMA_diagonal": True,
        "CMA_active": active,
        "popsize": default_popsize(n),
        "verbose": -9,
        # run the full budget; we do not consult es.stop()
        "tolfun": 0,
        "tolx": 0,
        "tolfunhist": 0,
    }
    bests = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, start in enumerate(x0):
            es = cma.CMAEvolutionStrategy(start, sigma0, {**opts, "seed": 1000 * seed + k + 1})
            best = math.inf
            for _ in range(gens):
                xs = es.ask()
                fs = [fn(np.asarray(x)) for x in xs]
                es.tell(xs, fs)
                best = min(best, min(fs))
            bests.append(best)
    return float(np.median(np.log10(bests)))


# --- comparison with pycma ---------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_progress_comparable_to_pycma(name: str) -> None:
    ours, ref = run_ours(name), run_pycma(name)
    assert ours <= ref + TOL[name], f"{name}: ours {ours:.2f} vs pycma {ref:.2f} (log10 median best f)"


def test_ellipsoid_beats_pycma_without_active_cma() -> None:
    """Brackets the ellipsoid result: our (non-active) diagonal learning must
    beat pycma's non-active sep mode (whose exponential diagonal update is
    damped by log(2)); measured lead 1.0 .. 2.1 orders over 12 seeds."""
    assert run_ours("ellipsoid") <= run_pycma("ellipsoid", active=False) - 0.5


def _no_csa(es: BatchedSepCMA) -> None:
    es.damps = math.inf  # sigma never changes


def _no_covariance(es: BatchedSepCMA) -> None:
    es.c1 = 0.0
    es.cmu = 0.0  # diag stays all ones: CSA-ES


@pytest.mark.parametrize(
    ("name", "tweak"),
    [
        ("sphere", _no_csa),
        ("ellipsoid", _no_csa),
        ("rosenbrock", _no_csa),
        ("ellipsoid", _no_covariance),
    ],
)
def test_criterion_has_teeth(name: str, tweak: Callable[[BatchedSepCMA], None]) -> None:
    """The pycma comparison would fail for an ES without real adaptation."""
    crippled = run_ours(name, tweak=tweak)
    assert crippled > run_pycma(name) + TOL[name] + TEETH_MARGIN


def test_isotropic_es_clearly_worse_on_ellipsoid() -> None:
    """The seed paper's fixed-sigma ES, at the same number of evaluations."""
    fn, _, n, _, gens, _, _, _ = CASES["ellipsoid"]
    x0, _ = _starts("ellipsoid", SEED)
    iso = IsotropicES(torch.tensor(x0, dtype=torch.float32), generator=torch.Generator().manual_seed(SEED))
    for _ in range(gens * default_popsize(n) // iso.popsize):
        x = iso.ask()
        iso.tell(x, fn(x).float())
    iso_med = float(np.median(np.log10(iso.best_f.double().numpy())))
    assert iso_med > run_ours("ellipsoid") + 4.0
    assert torch.equal(iso.sigma, torch.full_like(iso.sigma, 2.0))


# --- behaviour of the state ---------------------------------------------------


def _quadratic(x: torch.Tensor) -> torch.Tensor:
    c = torch.logspace(0, 3, x.shape[-1], dtype=x.dtype)
    return (c * (x - 1.0).square()).sum(-1)


def _state(es: BatchedSepCMA) -> dict[str, torch.Tensor]:
    return {
        "mean": es.mean,
        "sigma": es.sigma,
        "diag": es.diag,
        "ps": es.ps,
        "pc": es.pc,
        "best_x": es.best_x,
        "best_f": es.best_f,
        "n_updates": es.n_updates,
    }


def _run(es: BatchedSepCMA, gens: int, active: torch.Tensor | None = None) -> None:
    for _ in range(gens):
        x = es.ask()
        es.tell(x, _quadratic(x), active=active)


def test_defaults_and_shapes() -> None:
    n = 12
    es = BatchedSepCMA(torch.zeros(5, n), 0.5)
    assert es.popsize == 4 + math.floor(3 * math.log(n)) == default_popsize(n)
    assert es.mu == es.popsize // 2
    assert es.weights.sum().item() == pytest.approx(1.0)
    assert torch.all(es.weights[:-1] > es.weights[1:])
    c1 = 2 / ((n + 1.3) ** 2 + es.mueff) * (n + 2) / 3
    assert es.c1 == pytest.approx(c1)
    x = es.ask()
    assert x.shape == (5, es.popsize, n) and x.dtype == torch.float32
    assert es.mean.shape == es.diag.shape == (5, n) and es.sigma.shape == (5,)
    assert log_weights(30, 15) == pytest.approx(IsotropicES(torch.zeros(1, 3)).weights.tolist())


def test_per_problem_sigma_and_float64() -> None:
    es = BatchedSepCMA(torch.zeros(3, 8, dtype=torch.float64), torch.tensor([1e-3, 1.0, 1e3]))
    x = es.ask()
    assert x.dtype == torch.float64
    spread = x.std(dim=(1, 2))
    assert spread[0] < 1e-2 < spread[1] < 10 < spread[2]


def test_same_seed_same_results() -> None:
    def once(seed: int) -> dict[str, torch.Tensor]:
        es = BatchedSepCMA(torch.full((4, 10), 3.0), 1.0, generator=torch.Generator().manual_seed(seed))
        _run(es, 60)
        return _state(es)

    a, b, c = once(7), once(7), once(8)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["mean"], c["mean"])


def test_inactive_problem_is_frozen_exactly() -> None:
    es = BatchedSepCMA(torch.full((4, 10), 3.0), 1.0, generator=torch.Generator().manual_seed(1))
    _run(es, 20)
    before = {k: v.clone() for k, v in _state(es).items()}
    active = torch.tensor([True, False, True, False])
    _run(es, 30, active=active)
    after = _state(es)
    for key in before:
        assert torch.equal(after[key][~active], before[key][~active]), key
        assert not torch.equal(after[key][active], before[key][active]), key
    assert es.generation == 50
    assert es.n_updates.tolist() == [50, 20, 50, 20]
    # reactivated problems continue from where they stopped
    _run(es, 5)
    assert es.n_updates.tolist() == [55, 25, 55, 25]


def test_batching_does_not_change_a_problem_trajectory() -> None:
    """With one generator per problem, problem k solved alone follows the
    same trajectory as inside the batch."""
    starts = torch.randn(5, 10, generator=torch.Generator().manual_seed(0)) * 3
    batch = BatchedSepCMA(starts, 1.0, generator=[torch.Generator().manual_seed(100 + b) for b in range(5)])
    _run(batch, 80)
    k = 3
    alone = BatchedSepCMA(starts[k : k + 1], 1.0, generator=[torch.Generator().manual_seed(100 + k)])
    _run(alone, 80)
    for key, value in _state(alone).items():
        torch.testing.assert_close(_state(batch)[key][k : k + 1], value, msg=key)


def test_other_problems_fitness_does_not_leak() -> None:
    """Scrambling the fitness of every other problem leaves problem k untouched."""
    k = 1
    runs = []
    for scramble in (False, True):
        es = BatchedSepCMA(torch.full((3, 10), 2.0), 1.0, generator=torch.Generator().manual_seed(3))
        noise = torch.Generator().manual_seed(9)
        for _ in range(40):
            x = es.ask()
            f = _quadratic(x)
            if scramble:
                other = torch.arange(3) != k
                f[other] = torch.rand(f[other].shape, generator=noise) * 1e6
            es.tell(x, f)
        runs.append(_state(es))
    for key in runs[0]:
        assert torch.equal(runs[0][key][k], runs[1][key][k]), key
    for key in ("mean", "sigma", "diag", "best_f"):
        assert not torch.equal(runs[0][key][0], runs[1][key][0]), key


def test_flat_fitness_long_run_stays_finite() -> None:
    es = BatchedSepCMA(torch.zeros(4, 20), 1.0, generator=torch.Generator().manual_seed(5))
    for _ in range(3000):
        x = es.ask()
        es.tell(x, torch.zeros(4, es.popsize))
    for key, value in _state(es).items():
        assert torch.isfinite(value.float()).all(), key
    assert torch.all((es.sigma >= es.sigma_bounds[0]) & (es.sigma <= es.sigma_bounds[1]))
    cond = es.diag.amax(dim=1) / es.diag.amin(dim=1)
    assert torch.all(es.diag > 0) and torch.all(cond <= es.max_condition * 1.001)


def test_nan_fitness_ranks_last_and_never_poisons_state() -> None:
    es = BatchedSepCMA(torch.full((2, 6), 1.0), 0.3, generator=torch.Generator().manual_seed(2))
    for g in range(50):
        x = es.ask()
        f = _quadratic(x)
        f[:, ::2] = math.nan  # half the population fails to evaluate
        if g == 10:
            f[1] = math.nan  # and once, a whole problem does
        es.tell(x, f)
    for key, value in _state(es).items():
        assert torch.isfinite(value.float()).all(), key
    assert torch.equal(_quadratic(es.best_x), es.best_f)


def test_sigma_and_diag_are_clamped() -> None:
    es = BatchedSepCMA(torch.zeros(2, 5), 1.0, generator=torch.Generator().manual_seed(0), max_condition=1e3)
    for _ in range(300):  # a linear slope along x0 only: sigma and diag[0] grow without bound
        x = es.ask()
        es.tell(x, x[..., 0])
    assert torch.all(es.sigma <= es.sigma_bounds[1])
    assert torch.all(es.diag.amax(1) / es.diag.amin(1) <= 1e3 * 1.001)
    assert torch.isfinite(es.mean).all()


def test_bad_shapes_are_rejected() -> None:
    es = BatchedSepCMA(torch.zeros(2, 5), 1.0)
    x = es.ask()
    with pytest.raises(ValueError):
        es.tell(x[:, :-1], torch.zeros(2, es.popsize - 1))
    with pytest.raises(ValueError):
        es.tell(x, torch.zeros(2, es.popsize), active=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError):
        BatchedSepCMA(torch.zeros(2, 5), torch.ones(3))
    with pytest.raises(ValueError):
        BatchedSepCMA(torch.zeros(2, 5), 1.0, generator=[torch.Generator()])


def test_isotropic_es_mean_is_weighted_top_half() -> None:
    es = IsotropicES(torch.zeros(2, 4), generator=torch.Generator().manual_seed(0))
    assert es.popsize == 30 and es.mu == 15
    x = es.ask()
    f = _quadratic(x)
    es.tell(x, f)
    order = torch.argsort(f, dim=1)[:, :15]
    top = torch.gather(x, 1, order[..., None].expand(-1, -1, 4))
    expected = (es.weights[None, :, None] * top).sum(1)
    torch.testing.assert_close(es.mean, expected)
    torch.testing.assert_close(es.best_f, f.min(1).values)
    assert torch.equal(es.sigma, torch.full((2,), 2.0))
