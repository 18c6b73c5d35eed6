"""Within- and between-network correlations of units, from streamed moments.

The seed's first question — does a unit of net A have a twin in net B? — starts
from Pearson correlations over images (and positions, for conv layers). A unit
that never varies (a dead ReLU) has no correlation with anything: it is listed
in `dead_a_` / `dead_b_` and left out of every matrix, rather than becoming a
row of NaNs that would silently poison a matching or a mean.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from .stats import Moments


class Correlation(BaseEstimator):
    """Correlation matrices of two blocks of a `Moments` (net A's and net B's copies of a layer).

    Parameters
    ----------
    rtol : a unit is dead when its sd is at most `rtol` times the largest sd of its block.

    Attributes (after `fit`)
    ----------
    within_a_, within_b_ : correlations among the live units of A, of B.
    between_ : (live A units, live B units) correlations.
    alive_a_, alive_b_ : the original indices of the live units (rows/columns of the matrices).
    dead_a_, dead_b_ : the original indices of the dead units.
    mean_a_, sd_a_, mean_b_, sd_b_ : per-unit statistics of every unit, dead ones included.
    n_samples_ : samples (images × positions) behind the statistics.
    """

    def __init__(self, rtol: float = 1e-6):
        self.rtol = rtol

    def fit(self, moments: Moments, a: int = 0, b: int = 1) -> "Correlation":
        stats = {}
        for side, block in (("a", a), ("b", b)):
            dead = moments.dead(block, self.rtol)
            stats[side] = (np.flatnonzero(~dead), np.flatnonzero(dead), moments.mean(block), moments.sd(block))
        (self.alive_a_, self.dead_a_, self.mean_a_, self.sd_a_) = stats["a"]
        (self.alive_b_, self.dead_b_, self.mean_b_, self.sd_b_) = stats["b"]
        self.within_a_ = self._corr(moments.cov(a, a), self.alive_a_, self.alive_a_, self.sd_a_, self.sd_a_)
        self.within_b_ = self._corr(moments.cov(b, b), self.alive_b_, self.alive_b_, self.sd_b_, self.sd_b_)
        self.between_ = self._corr(moments.cov(a, b), self.alive_a_, self.alive_b_, self.sd_a_, self.sd_b_)
        self.n_samples_ = int(moments.n_samples_seen_)
        return self

    @staticmethod
    def _corr(cov, rows, cols, sd_rows, sd_cols) -> np.ndarray:
        c = cov[np.ix_(rows, cols)] / np.outer(sd_rows[rows], sd_cols[cols])
        return np.clip(c, -1.0, 1.0)

    def combined(self) -> np.ndarray:
        """[[corr(A,A), corr(A,B)], [corr(B,A), corr(B,B)]] over the live units: the seed's graph."""
        return np.block([[self.within_a_, self.between_], [self.between_.T, self.within_b_]])


def correlations(xa, xb, rtol: float = 1e-6) -> Correlation:
    """In one call for in-memory activations (n, units) or conv maps of two nets."""
    return Correlation(rtol).fit(Moments().partial_fit(xa, xb))
