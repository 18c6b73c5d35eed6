"""Linear CKA between every pair of blocks of units (Kornblith et al. 2019), from streamed moments.

CKA compares whole representations, not units: invariant to orthogonal
transforms and isotropic scaling of either side, so two nets that span the same
subspace with different bases score high even where unit matching fails. The
biased estimator is ‖X̃ᵀỸ‖²_F / (‖X̃ᵀX̃‖_F ‖ỸᵀỸ‖_F) with centered features;
the debiased one replaces each HSIC by its U-statistic (Song et al. 2012),
which removes the pull towards 1 that few samples and many units give. Both
come from `Moments` (the debiased one needs its higher-order sums), so the
samples never have to be in memory at once. `cka_matrix` gives the same matrix from features held in
memory, through each block's n×n Gram matrix: for many blocks of few samples (every epoch of a run),
where `Moments`' (Σ units)² sums would not fit.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator

from .stats import Moments


class CKA(BaseEstimator):
    """The CKA matrix of every pair of blocks of a `Moments`.

    Attributes: matrix_ (blocks, blocks), names_ (the blocks' names, or their indices).
    """

    def __init__(self, debiased: bool = False):
        self.debiased = debiased

    def fit(self, moments: Moments) -> "CKA":
        k = len(moments.sizes_)
        m = np.eye(k)
        for i in range(k):
            for j in range(i + 1, k):
                m[i, j] = m[j, i] = moments.cka(i, j, self.debiased)
        if self.debiased:  # a block against itself is exactly 1 either way
            np.fill_diagonal(m, 1.0)
        self.matrix_ = m
        self.names_ = list(moments.names) if moments.names is not None else list(range(k))
        return self


def linear_cka(x, y, debiased: bool = False) -> float:
    """Linear CKA of two in-memory representations (n, units) of the same samples."""
    return Moments().partial_fit(x, y).cka(0, 1, debiased)


def cka_matrix(features: list, debiased: bool = False) -> np.ndarray:
    """The CKA matrix of blocks held in memory, (n, units_k) each with the same n samples, as `CKA`
    gives it from `Moments`.

    Why Gram matrices: with centered features X̃, ‖X̃ᵀỸ‖² = ⟨K, L⟩ for K = X̃X̃ᵀ, L = ỸỸᵀ, and the
    debiased terms are K's and L's diagonals and traces. So memory is n² per block, where `Moments`
    needs (Σ units)² for all blocks together: 70 GiB for 101 epochs of a ResNet-18's 960 channels
    (bench/results/scale_soak_before_fixes.txt), where 404 Gram matrices of 400 images take 0.5 GiB."""
    n = int(features[0].shape[0])
    if debiased and n < 4:
        raise ValueError(f"debiased CKA needs at least 4 samples, have {n}")
    grams = torch.empty(len(features), n, n, dtype=torch.float64)
    for k, x in enumerate(features):
        x = torch.as_tensor(x).to("cpu", torch.float64)
        x = x - x.mean(0)
        torch.matmul(x, x.T, out=grams[k])
    flat = grams.reshape(len(features), -1)
    hsic = flat @ flat.T
    if debiased:
        diagonals = grams.diagonal(dim1=1, dim2=2)  # (blocks, n): each sample's squared norm
        traces = diagonals.sum(1)
        hsic = hsic - n / (n - 2) * diagonals @ diagonals.T + torch.outer(traces, traces) / ((n - 1) * (n - 2))
    scale = hsic.diagonal().clamp_min(0).sqrt()
    denominator = torch.outer(scale, scale)
    matrix = torch.where(denominator > 0, hsic / torch.where(denominator > 0, denominator, 1), 0).numpy()
    np.fill_diagonal(matrix, 1.0)  # a block against itself, as `CKA` sets it
    return matrix
