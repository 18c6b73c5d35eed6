"""Batched evolution strategies for running many independent searches at once.

The search phase of image synthesis runs one evolution strategy per unit of a
layer (hundreds of units), each in a latent space of a few thousand dimensions,
and advances all of them together as ``(B, ...)`` tensors on one device.

Why sep-CMA-ES (Ros & Hansen 2008) and not full CMA-ES
------------------------------------------------------
A full covariance matrix costs ``B * n * n`` floats (512 units x 4096^2 floats
x 4 bytes = 34 GB) plus an ``O(n^3)`` eigendecomposition per problem and
generation. sep-CMA-ES keeps only the diagonal of ``C``: ``B * n`` floats, and
every generation is linear in ``n`` (sampling, recombination, path and diagonal
updates are all elementwise). Because the diagonal has only ``n`` free
parameters instead of ``n^2 / 2``, it can be learned much faster, so the
covariance learning rates are scaled up by ``(n + 2) / 3`` as in the paper.

Known weakness: sep-CMA-ES can only learn axis-aligned scalings. On
non-separable, ill-conditioned problems (the rotated ellipsoid is the textbook
case) the diagonal cannot express the needed shape, so it degrades to roughly
an isotropic ES with step-size adaptation and can be orders of magnitude
slower than full CMA-ES. It keeps cumulative step-size adaptation (CSA), which
is what matters most compared with a fixed-step search.

Learning rates: Hansen's tutorial defaults ``c1 = 2 / ((n + 1.3)^2 + mueff)``
and ``cmu = 2 (mueff - 2 + 1/mueff) / ((n + 2)^2 + mueff)``, both multiplied
by ``(n + 2) / 3``. Only positive weights are used (no active CMA), so the
diagonal stays positive by construction. pycma's ``CMA_diagonal=True`` uses
similar-sized rates but an exponential, *active* diagonal update, which adapts
faster on axis-aligned ill-conditioned problems (about an order of magnitude
in f on a 10-D ellipsoid with condition 1e4 after 120 generations).

Conventions
-----------
Both classes **minimize**, like pycma: pass ``-activation`` to maximize. Every
tensor of state has a leading batch dimension ``B``; problem ``b`` never reads
another problem's state or fitness. ``tell`` takes an optional boolean
``active`` mask so that problems which have converged or exited keep their
state exactly while the others continue.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["BatchedSepCMA", "IsotropicES", "default_popsize", "log_weights"]

def default_popsize(n: int) -> int:
    """Standard CMA-ES population size ``4 + floor(3 ln n)``."""
    return 4 + int(math.floor(3 * math.log(n)))


def log_weights(popsize: int, mu: int | None = None) -> list[float]:
    """Positive CMA log-weights ``ln((popsize + 1) / 2) - ln(i)`` for the best ``mu``.

    Normalized to sum to one. The default ``mu = popsize // 2`` is the standard
    truncation: only the better half of the samples pulls the mean.
    """
    if mu is None:
        mu = popsize // 2
    if not 1 <= mu <= popsize:
        raise ValueError(f"need 1 <= mu <= popsize, got mu={mu}, popsize={popsize}")
    raw = [math.log((popsize + 1) / 2) - math.log(i) for i in range(1, mu + 1)]
    if raw[-1] <= 0:  # only when mu > popsize // 2 was asked for explicitly
        raw = [math.log(mu + 0.5) - math.log(i) for i in range(1, mu + 1)]
    total = sum(raw)
    return [w / total for w in raw]


class _BatchedES:
    """Shared plumbing: shapes, sampling noise, fitness sanitation, best-so-far."""

    def __init__(
        self,
        mean: Tensor,
        popsize: int,
        generator: torch.Generator | Sequence[torch.Generator] | None,
    ) -> None:
        if mean.ndim != 2:
            raise ValueError(f"mean must be (B, n), got shape {tuple(mean.shape)}")
        if not mean.is_floating_point():
            mean = mean.float()
        if popsize < 2:
            raise ValueError(f"popsize must be >= 2, got {popsize}")
        self.batch, self.dim = int(mean.shape[0]), int(mean.shape[1])
        self.device, self.dtype = mean.device, mean.dtype
        self.popsize = int(popsize)
        if generator is not None and not isinstance(generator, torch.Generator):
            generator = list(generator)
            if len(generator) != self.batch:
                raise ValueError(
                    f"got {len(generator)} generators for {self.batch} problems; "
                    "pass one generator, or exactly one per problem"
                )
        self.generator = generator
        self.mean = mean.detach().clone()
        self.best_x = self.mean.clone()
        self.best_f = torch.full((self.batch,), math.inf, device=self.device, dtype=self.dtype)
        self.generation = 0
        """Number of ``tell`` calls (a problem masked out still counts them)."""
        self.n_updates = torch.zeros(self.batch, dtype=torch.long, device=self.device)
        """Per problem: how many ``tell`` calls actually updated it."""

    def _standard_normal(self) -> Tensor:
        """``(B, popsize, n)`` standard normal noise from the configured generator(s).

        With one generator per problem, problem ``b``'s noise depends only on
        its own generator, so a problem's trajectory does not depend on which
        batch it was run in (useful to split units across devices or jobs).
        """
        shape = (self.batch, self.popsize, self.dim)
        if isinstance(self.generator, list):
            return torch.stack(
                [
                    torch.randn(shape[1:], generator=g, device=self.device, dtype=self.dtype)
                    for g in self.generator
                ]
            )
        return torch.randn(shape, generator=self.generator, device=self.device, dtype=self.dtype)

    def _check_tell(
        self, candidates: Tensor, fitness: Tensor, active: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Validate shapes; NaN fitness becomes +inf so it ranks last, never first."""
        expected = (self.batch, self.popsize, self.dim)
        if tuple(candidates.shape) != expected:
            raise ValueError(f"candidates must be {expected}, got {tuple(candidates.shape)}")
        if tuple(fitness.shape) != (self.batch, self.popsize):
            raise ValueError(
                f"fitness must be {(self.batch, self.popsize)}, got {tuple(fitness.shape)}"
            )
        x = candidates.detach().to(device=self.device, dtype=self.dtype)
        f = fitness.detach().to(device=self.device)
        # rank in the caller's precision (float64 fitness keeps its resolution)
        f_dtype = torch.promote_types(f.dtype, self.dtype) if f.is_floating_point() else self.dtype
        f = torch.nan_to_num(f.to(f_dtype), nan=math.inf)
        if active is None:
            act = torch.ones(self.batch, dtype=torch.bool, device=self.device)
        else:
            if tuple(active.shape) != (self.batch,):
                raise ValueError(f"active must be ({self.batch},), got {tuple(active.shape)}")
            act = active.to(device=self.device, dtype=torch.bool)
        return x, f, act

    @staticmethod
    def _rank(x: Tensor, f: Tensor, mu: int) -> tuple[Tensor, Tensor]:
        """Best ``mu`` candidates per problem, best first, and their fitness.

        A stable sort makes ties (e.g. a flat fitness) resolve by sample index,
        which keeps runs reproducible.
        """
        f_sorted, order = torch.sort(f, dim=1, stable=True)
        idx = order[:, :mu, None].expand(-1, -1, x.shape[2])
        return torch.gather(x, 1, idx), f_sorted[:, :mu]

    def _update_best(self, x_top: Tensor, f_top: Tensor, act: Tensor) -> None:
        """Keep the best candidate ever evaluated (not the mean, which is never evaluated)."""
        f0 = f_top[:, 0].to(self.dtype)
        better = act & (f0 < self.best_f)
        self.best_f = torch.where(better, f0, self.best_f)
        self.best_x = torch.where(better[:, None], x_top[:, 0], self.best_x)


class BatchedSepCMA(_BatchedES):
    """``B`` independent sep-CMA-ES instances of dimension ``n``, advanced together.

    Minimizes. State per problem: ``mean (B, n)``, ``sigma (B,)``, ``diag (B, n)``
    (the diagonal of ``C``), evolution paths ``ps, pc (B, n)``. Samples are
    ``x = mean + sigma * sqrt(diag) * z`` with ``z ~ N(0, I)``.

    Updates per generation (Hansen's tutorial notation, ``y = (x - m) / sigma``,
    positive log-weights over the best ``mu = popsize // 2``):

    * mean: weighted recombination of the best ``mu`` samples;
    * CSA: ``ps`` accumulates ``C^{-1/2} y_w``; sigma grows when ``|ps|`` is
      longer than expected under random selection and shrinks when shorter;
    * rank-one (``c1 * pc**2``) plus rank-mu (``cmu * sum_i w_i y_i**2``)
      update of the diagonal, with ``c1`` and ``cmu`` scaled by ``(n + 2) / 3``.

    Args:
        mean: ``(B, n)`` initial means; its device and dtype set the state's.
        sigma: initial step size, a float or a ``(B,)`` tensor.
        popsize: samples per problem per generation (default ``4 + floor(3 ln n)``).
        generator: a ``torch.Generator`` on ``mean``'s device for reproducible
            sampling, or a sequence of ``B`` generators (one per problem) so a
            problem's trajectory does not depend on the batch it runs in (one
            ``randn`` call per problem, so slower for large ``B`` on a GPU).
        sigma_bounds: ``sigma`` is clamped into this range every generation.
        max_condition: the ratio ``max(diag) / min(diag)`` is capped at this.
        diag_bounds: absolute clamp on ``diag``.
    """

    def __init__(
        self,
        mean: Tensor,
        sigma: float | Tensor,
        popsize: int | None = None,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        *,
        sigma_bounds: tuple[float, float] = (1e-20, 1e20),
        max_condition: float = 1e14,
        diag_bounds: tuple[float, float] = (1e-20, 1e20),
    ) -> None:
        if popsize is None:
            popsize = default_popsize(max(int(mean.shape[-1]), 1))
        super().__init__(mean, popsize, generator)
        n, lam = self.dim, self.popsize
        self.sigma_bounds = (float(sigma_bounds[0]), float(sigma_bounds[1]))
        self.diag_bounds = (float(diag_bounds[0]), float(diag_bounds[1]))
        self.max_condition = float(max_condition)

        sig = torch.as_tensor(sigma, device=self.device, dtype=self.dtype)
        if sig.ndim == 0:
            sig = sig.expand(self.batch)
        if tuple(sig.shape) != (self.batch,):
            raise ValueError(f"sigma must be a float or ({self.batch},), got {tuple(sig.shape)}")
        if not bool(torch.all(sig > 0)):
            raise ValueError("sigma must be positive")
        self.sigma = sig.clone()
        self.diag = torch.ones(self.batch, n, device=self.device, dtype=self.dtype)
        self.ps = torch.zeros(self.batch, n, device=self.device, dtype=self.dtype)
        self.pc = torch.zeros(self.batch, n, device=self.device, dtype=self.dtype)

        # Strategy parameters: the defaults of Hansen's CMA-ES tutorial (2016),
        # with the covariance learning rates scaled by (n + 2) / 3 for the
        # diagonal (Ros & Hansen 2008).
        self.mu = lam // 2
        w = log_weights(lam, self.mu)
        self.weights = torch.tensor(w, device=self.device, dtype=self.dtype)
        self.mueff = 1.0 / sum(wi * wi for wi in w)
        mueff = self.mueff
        self.cs = (mueff + 2) / (n + mueff + 5)
        self.damps = 1 + 2 * max(0.0, math.sqrt((mueff - 1) / (n + 1)) - 1) + self.cs
        self.cc = (4 + mueff / n) / (n + 4 + 2 * mueff / n)
        c1 = 2 / ((n + 1.3) ** 2 + mueff)
        cmu = min(1 - c1, 2 * (mueff - 2 + 1 / mueff) / ((n + 2) ** 2 + mueff))
        sep = (n + 2) / 3
        c1, cmu = c1 * sep, cmu * sep
        if c1 + cmu > 1:  # only in tiny dimensions; keep the decay factor >= 0
            c1, cmu = c1 / (c1 + cmu), cmu / (c1 + cmu)
        self.c1, self.cmu = c1, cmu
        self.chi_n = math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n * n))

    @property
    def std(self) -> Tensor:
        """``(B, n)`` per-coordinate sampling standard deviation ``sigma * sqrt(diag)``."""
        return self.sigma[:, None] * self.diag.sqrt()

    def ask(self) -> Tensor:
        """Sample ``(B, popsize, n)`` candidates ``mean + sigma * sqrt(diag) * z``.

        Every problem is sampled, inactive ones too (ignore those rows), so the
        random stream, and hence the other problems' samples, do not depend on
        the ``active`` mask.
        """
        z = self._standard_normal()
        return self.mean[:, None, :] + self.std[:, None, :] * z

    def tell(self, candidates: Tensor, fitness: Tensor, active: Tensor | None = None) -> None:
        """Update every active problem from its candidates and their fitness (lower is better).

        ``candidates`` are normally what ``ask`` returned; the update recomputes
        the steps from them, so repaired or projected candidates are honoured.
        Problems with ``active[b] == False`` keep their state bit-for-bit. A
        problem whose update would produce non-finite state is also left
        unchanged for this generation rather than poisoned with NaN/inf.
        """
        x, f, act = self._check_tell(candidates, fitness, active)
        x_top, f_top = self._rank(x, f, self.mu)
        self._update_best(x_top, f_top, act)
        w = self.weights[None, :, None]
        y_top = (x_top - self.mean[:, None, :]) / self.sigma[:, None, None]
        y_w = (w * y_top).sum(dim=1)
        new_mean = self.mean + self.sigma[:, None] * y_w
        ps, ps_norm, pc, hsig = self._paths(y_w)
        diag = self._new_diag(pc, hsig, (w * y_top.square()).sum(dim=1))
        log_step = (self.cs / self.damps) * (ps_norm / self.chi_n - 1)
        new_sigma = self.sigma * torch.exp(torch.clamp(log_step, max=1.0))
        new_sigma = new_sigma.clamp(*self.sigma_bounds)
        self._commit(act, new_mean, ps, pc, diag, new_sigma)

    def _paths(self, y_w: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The evolution paths after step ``y_w``: ``ps`` (and its norm) for CSA, ``pc`` (and hsig) for ``C``."""
        n = self.dim
        # CSA: the path lives in the isotropic coordinates C^{-1/2} y.
        inv_sqrt_diag = self.diag.rsqrt()
        ps = (1 - self.cs) * self.ps + math.sqrt(self.cs * (2 - self.cs) * self.mueff) * (
            y_w * inv_sqrt_diag
        )
        ps_norm = torch.linalg.vector_norm(ps, dim=1)
        # hsig stalls pc while |ps| is large (sigma is growing fast), so C is
        # not elongated by a step that CSA is already absorbing.
        t = (self.n_updates + 1).to(self.dtype)
        correction = torch.sqrt(1 - (1 - self.cs) ** (2 * t))
        hsig = (ps_norm / correction < (1.4 + 2 / (n + 1)) * self.chi_n).to(self.dtype)[:, None]
        pc = (1 - self.cc) * self.pc + hsig * math.sqrt(self.cc * (2 - self.cc) * self.mueff) * y_w
        return ps, ps_norm, pc, hsig

    def _new_diag(self, pc: Tensor, hsig: Tensor, rank_mu: Tensor) -> Tensor:
        """Rank-one plus rank-mu update of the diagonal of ``C``, kept in bounds."""
        # (1 - hsig) * c1 * cc * (2 - cc) puts back the variance that a stalled pc misses.
        decay = 1 - self.c1 - self.cmu + (1 - hsig) * self.c1 * self.cc * (2 - self.cc)
        diag = decay * self.diag + self.c1 * pc.square() + self.cmu * rank_mu
        # Bound the condition number by raising the smallest entries, then the absolute range.
        lo = torch.clamp(diag.amax(dim=1, keepdim=True) / self.max_condition, min=self.diag_bounds[0])
        return torch.maximum(diag, lo).clamp(max=self.diag_bounds[1])

    def _commit(self, act: Tensor, new_mean: Tensor, ps: Tensor, pc: Tensor, diag: Tensor, new_sigma: Tensor) -> None:
        """Take the new state for active problems whose update stayed finite; the rest keep theirs."""
        ok = (
            torch.isfinite(new_mean).all(dim=1)
            & torch.isfinite(ps).all(dim=1)
            & torch.isfinite(pc).all(dim=1)
            & torch.isfinite(diag).all(dim=1)
            & torch.isfinite(new_sigma)
        )
        upd = act & ok
        u = upd[:, None]
        self.mean = torch.where(u, new_mean, self.mean)
        self.ps = torch.where(u, ps, self.ps)
        self.pc = torch.where(u, pc, self.pc)
        self.diag = torch.where(u, diag, self.diag)
        self.sigma = torch.where(upd, new_sigma, self.sigma)
        self.n_updates = self.n_updates + upd.long()
        self.generation += 1

class IsotropicES(_BatchedES):
    """The seed paper's "batched CMA-ES": an isotropic ES with no adaptation at all.

    Kept as a baseline. Each generation samples ``mean + sigma * z`` with a
    fixed ``sigma`` and replaces the mean by the log-weighted average of the
    best half (15 of 30 by default). Without step-size adaptation it cannot
    converge below the scale set by ``sigma``, and without covariance
    learning it is slow on ill-conditioned problems. Minimizes.
    """

    def __init__(
        self,
        mean: Tensor,
        sigma: float | Tensor = 2.0,
        popsize: int = 30,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        mu: int | None = None,
    ) -> None:
        super().__init__(mean, popsize, generator)
        sig = torch.as_tensor(sigma, device=self.device, dtype=self.dtype)
        if sig.ndim == 0:
            sig = sig.expand(self.batch)
        if tuple(sig.shape) != (self.batch,):
            raise ValueError(f"sigma must be a float or ({self.batch},), got {tuple(sig.shape)}")
        self.sigma = sig.clone()
        self.mu = self.popsize // 2 if mu is None else int(mu)
        self.weights = torch.tensor(log_weights(self.popsize, self.mu), device=self.device, dtype=self.dtype)

    def ask(self) -> Tensor:
        """Sample ``(B, popsize, n)`` candidates ``mean + sigma * z``."""
        return self.mean[:, None, :] + self.sigma[:, None, None] * self._standard_normal()

    def tell(self, candidates: Tensor, fitness: Tensor, active: Tensor | None = None) -> None:
        """Move each active mean to the weighted average of its best ``mu`` candidates."""
        x, f, act = self._check_tell(candidates, fitness, active)
        x_top, f_top = self._rank(x, f, self.mu)
        self._update_best(x_top, f_top, act)
        new_mean = (self.weights[None, :, None] * x_top).sum(dim=1)
        upd = act & torch.isfinite(new_mean).all(dim=1)
        self.mean = torch.where(upd[:, None], new_mean, self.mean)
        self.n_updates = self.n_updates + upd.long()
        self.generation += 1
