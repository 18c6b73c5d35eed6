"""Linear CKA between every pair of blocks of units (Kornblith et al. 2019), from streamed moments.

CKA compares whole representations, not units: invariant to orthogonal
transforms and isotropic scaling of either side, so two nets that span the same
subspace with different bases score high even where unit matching fails. The
biased estimator is ‖X̃ᵀỸ‖²_F / (‖X̃ᵀX̃‖_F ‖ỸᵀỸ‖_F) with centered features;
the debiased one replaces each HSIC by its U-statistic (Song et al. 2012),
which removes the pull towards 1 that few samples and many units give. Both
come from `Moments` (the debiased one needs its higher-order sums), so the
samples never have to be in memory at once.
"""

from __future__ import annotations

import numpy as np
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
