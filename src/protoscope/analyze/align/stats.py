"""Streaming moments of units: what every alignment needs, without keeping activations.

A layer with thousands of units over tens of thousands of images (times spatial
positions) does not fit in memory; its first and second moments do. `Moments`
accumulates, in float64 on the device, the running sums of x and x xᵀ of one or
more *blocks* of units seen on the same samples — two networks' copies of a
layer, or every layer of every checkpoint — so within- and between-block
covariances come out of one matrix. For linear CKA it also keeps the few
higher-order sums the debiased estimator needs (Σ‖x‖²‖y‖², Σ x‖y‖²): D·K
numbers per block pair, never anything that grows with the number of samples.

Conv activations (B, C, H, W) count every (image, position) as a sample of
each channel, as the seed does; `pool` averages over space instead (one sample
per image, what CKA between layers of different sizes needs).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted


def as_rows(x) -> torch.Tensor:
    """(n, D) stays; (B, C, *space) -> (B·H·W, C): every position is a sample of its channel."""
    x = torch.as_tensor(x)
    if x.ndim == 2:
        return x
    if x.ndim < 2:
        raise ValueError(f"activations need a unit axis: got shape {tuple(x.shape)}")
    return x.movedim(1, -1).reshape(-1, x.shape[1])


def pool(x) -> torch.Tensor:
    """(B, C, *space) -> (B, C), the spatial mean; (n, D) stays."""
    x = torch.as_tensor(x)
    return x.mean(dim=tuple(range(2, x.ndim))) if x.ndim > 2 else x


def accumulation_device(device) -> torch.device:
    """Where float64 sums can live: the given device, or the CPU where float64 is missing (MPS)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    return torch.device("cpu") if device.type == "mps" else device


class Moments(BaseEstimator):
    """Running sums of x, x xᵀ (and CKA's higher-order sums) of blocks of units observed together.

    `partial_fit(*blocks)` takes one array per block, all with the same samples
    (rows, or conv maps flattened by `as_rows`). Sums are taken around a shift
    (the first batch's mean), which keeps float64 cancellation negligible when
    means are large against spreads. Derived quantities (`mean`, `cov`, `sd`,
    `dead`, `cka`) are float64 numpy.

    Parameters
    ----------
    device : where the sums live (default: the first batch's device; CPU for MPS).
    higher : keep the sums debiased CKA needs (cheap: D·K + K² numbers).
    names : optional block names (e.g. "run/epoch/layer"), for reports.
    """

    def __init__(self, device=None, higher: bool = True, names=None):
        self.device = device
        self.higher = higher
        self.names = names

    # ------------------------------------------------------------------ accumulation
    def partial_fit(self, *blocks) -> "Moments":
        rows = [as_rows(b) for b in blocks]
        if not rows:
            raise ValueError("partial_fit needs at least one block of activations")
        n = rows[0].shape[0]
        if any(r.shape[0] != n for r in rows):
            raise ValueError(f"every block needs the same samples; got rows {[r.shape[0] for r in rows]}")
        sizes = [int(r.shape[1]) for r in rows]
        if not hasattr(self, "n_samples_seen_"):
            self._start(sizes, rows[0].device)
        elif sizes != self.sizes_:
            raise ValueError(f"block sizes changed from {self.sizes_} to {sizes}")
        if n == 0:
            return self
        z = torch.cat([r.to(self.device_, torch.float64) for r in rows], dim=1)
        if self.n_samples_seen_ == 0 and not self._shift_set:
            self.shift_ = z.mean(0)
            self._shift_set = True
        z = z - self.shift_
        self.sum_ += z.sum(0)
        self.outer_.addmm_(z.T, z)
        if self.higher:
            q = torch.stack([z[:, a:b].square().sum(1) for a, b in self.slices_], dim=1)
            self.qsum_ += q.sum(0)
            self.qouter_.addmm_(q.T, q)
            self.zq_.addmm_(z.T, q)
        self.n_samples_seen_ += n
        return self

    def fit(self, batches) -> "Moments":
        """Accumulate an iterable of batches (each a tuple of blocks, or one array) from scratch."""
        for attr in [a for a in vars(self) if a.endswith("_") and not a.startswith("__")]:
            delattr(self, attr)
        for batch in batches:
            self.partial_fit(*(batch if isinstance(batch, (tuple, list)) else (batch,)))
        return self

    def _start(self, sizes: list[int], data_device) -> None:
        self.device_ = accumulation_device(self.device if self.device is not None else data_device)
        self.sizes_ = sizes
        edges = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.slices_ = [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
        D, K = int(edges[-1]), len(sizes)
        kw = dict(dtype=torch.float64, device=self.device_)
        self.shift_ = torch.zeros(D, **kw)
        self._shift_set = False
        self.sum_ = torch.zeros(D, **kw)
        self.outer_ = torch.zeros(D, D, **kw)
        if self.higher:
            self.qsum_ = torch.zeros(K, **kw)
            self.qouter_ = torch.zeros(K, K, **kw)
            self.zq_ = torch.zeros(D, K, **kw)
        self.n_samples_seen_ = 0

    def nbytes(self) -> int:
        """Memory held by the sums: fixed by the block sizes, independent of the samples seen."""
        check_is_fitted(self, "n_samples_seen_")
        tensors = [v for v in vars(self).values() if isinstance(v, torch.Tensor)]
        return sum(t.element_size() * t.numel() for t in tensors)

    # ------------------------------------------------------------------ derived statistics
    def _check(self, *blocks: int) -> None:
        check_is_fitted(self, "n_samples_seen_")
        if self.n_samples_seen_ < 2:
            raise ValueError(f"moments need at least 2 samples, have {self.n_samples_seen_}")
        for b in blocks:
            if not 0 <= b < len(self.sizes_):
                raise IndexError(f"block {b} out of range: {len(self.sizes_)} blocks")

    def _centered(self):
        """(mean of the shifted data m, n) as float64 tensors."""
        n = self.n_samples_seen_
        return self.sum_ / n, n

    def mean(self, block: int = 0) -> np.ndarray:
        self._check(block)
        a, b = self.slices_[block]
        m, _ = self._centered()
        return (self.shift_[a:b] + m[a:b]).cpu().numpy()

    def _cov(self, i: int, j: int) -> torch.Tensor:
        (a, b), (c, d) = self.slices_[i], self.slices_[j]
        m, n = self._centered()
        return self.outer_[a:b, c:d] / n - torch.outer(m[a:b], m[c:d])

    def cov(self, i: int = 0, j: int | None = None) -> np.ndarray:
        """Covariance (population, ddof 0) between the units of block i and block j."""
        j = i if j is None else j
        self._check(i, j)
        return self._cov(i, j).cpu().numpy()

    def sd(self, block: int = 0) -> np.ndarray:
        self._check(block)
        return self._cov(block, block).diagonal().clamp_min(0).sqrt().cpu().numpy()

    def dead(self, block: int = 0, rtol: float = 1e-6) -> np.ndarray:
        """Units that never vary: sd 0, or below `rtol` times the block's largest sd."""
        sd = self.sd(block)
        return sd <= rtol * max(float(sd.max(initial=0.0)), np.finfo(float).tiny)

    # ------------------------------------------------------------------ linear CKA
    def _hsic(self, i: int, j: int, debiased: bool) -> float:
        """HSIC of the linear kernels of blocks i and j from the moments (common factors dropped).

        Biased: ‖X̃ᵀỸ‖² with centered features. Debiased (Song et al. 2012's
        U-statistic, as Kornblith et al. use it on centered features):
        ‖X̃ᵀỸ‖² − n/(n−2) Σᵢ‖x̃ᵢ‖²‖ỹᵢ‖² + (Σ‖x̃ᵢ‖²)(Σ‖ỹᵢ‖²)/((n−1)(n−2)).
        """
        cov = self._cov(i, j)
        n = self.n_samples_seen_
        cross = float((n * n) * cov.square().sum())
        if not debiased:
            return cross
        (a, b), (c, d) = self.slices_[i], self.slices_[j]
        m, _ = self._centered()
        mx, my = m[a:b], m[c:d]
        cx, cy = float(mx @ mx), float(my @ my)
        # Σ rᵢ tᵢ with rᵢ = ‖zᵢ − m_x‖², tᵢ = ‖zᵢ − m_y‖², expanded into the stored sums.
        rt = (float(self.qouter_[i, j])
              - 2 * float(my @ self.zq_[c:d, i]) + cy * float(self.qsum_[i])
              - 2 * float(mx @ self.zq_[a:b, j]) + cx * float(self.qsum_[j])
              + 4 * float(mx @ self.outer_[a:b, c:d] @ my)
              - 3 * n * cx * cy)
        r_total = n * float(self._cov(i, i).diagonal().sum())
        t_total = n * float(self._cov(j, j).diagonal().sum())
        return cross - n / (n - 2) * rt + r_total * t_total / ((n - 1) * (n - 2))

    def cka(self, i: int = 0, j: int = 1, debiased: bool = False) -> float:
        """Linear CKA between blocks i and j (Kornblith et al. 2019); debiased needs n > 3 samples."""
        self._check(i, j)
        if debiased and not self.higher:
            raise ValueError("debiased CKA needs Moments(higher=True)")
        if debiased and self.n_samples_seen_ < 4:
            raise ValueError(f"debiased CKA needs at least 4 samples, have {self.n_samples_seen_}")
        xy = self._hsic(i, j, debiased)
        xx = self._hsic(i, i, debiased)
        yy = self._hsic(j, j, debiased)
        denom = np.sqrt(max(xx, 0.0) * max(yy, 0.0))
        return float(xy / denom) if denom > 0 else 0.0
