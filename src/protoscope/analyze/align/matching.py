"""One-to-one alignment of units: semi-matching and max-weight bipartite matching.

Semi-matching pairs every unit of A with its most similar unit of B, repeats
allowed; bipartite matching (scipy's `linear_sum_assignment`, an exact
Hungarian-type solver) pairs them one-to-one with the largest total. The
semi-matching total is never below the matching's: the gap says how often
several A units share one best B partner. The seed's figures sort the matched
similarities (Figures 3, 4) and compare their per-layer means (Figure 10).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.base import BaseEstimator

METHODS = ("bipartite", "semi")


def semi_matching(similarity) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best column (repeats allowed) and its similarity."""
    s = np.asarray(similarity, dtype=float)
    partner = s.argmax(axis=1)
    return partner, s[np.arange(len(s)), partner]


def bipartite_matching(similarity) -> tuple[np.ndarray, np.ndarray]:
    """The one-to-one pairing of rows and columns with the largest total similarity.

    Rows left without a column (more rows than columns) get partner -1 and value 0.
    """
    s = np.asarray(similarity, dtype=float)
    rows, cols = linear_sum_assignment(s, maximize=True)
    partner = np.full(len(s), -1)
    partner[rows] = cols
    value = np.zeros(len(s))
    value[rows] = s[rows, cols]
    return partner, value


class Matching(BaseEstimator):
    """Align net B's units to net A's from a similarity matrix (correlation or mutual information).

    Parameters
    ----------
    method : "bipartite" (one-to-one) or "semi" (best partner, repeats allowed).
    threshold : a unit whose matched similarity is below it has "no partner" (`unpaired_fraction_`).

    `fit(similarity, rows=None, cols=None)`: rows are A's units, columns B's; `rows`/`cols`
    give their original unit indices (e.g. `Correlation.alive_a_`), so dead units can be left out.

    Attributes
    ----------
    units_ : A's unit indices (the rows).
    partner_ : for each row, the matched B unit (original index), -1 if none. With square,
        complete input it is the permutation that aligns B to A: B[:, partner_] ~ A.
    value_ : each row's matched similarity (0 where no partner).
    curve_ : the matched similarities of the paired rows, sorted high to low (the seed's curves).
    mean_, total_ : their mean and sum.
    unpaired_fraction_ : share of rows with no partner at or above `threshold`.
    distinct_partners_ : how many different B units were chosen.
    """

    def __init__(self, method: str = "bipartite", threshold: float = 0.5):
        self.method = method
        self.threshold = threshold

    def fit(self, similarity, rows=None, cols=None) -> "Matching":
        if self.method not in METHODS:
            raise ValueError(f"unknown matching method {self.method!r}; valid: {', '.join(METHODS)}")
        s = np.asarray(similarity, dtype=float)
        if s.ndim != 2 or 0 in s.shape:
            raise ValueError(f"similarity must be a non-empty 2-D matrix, got shape {s.shape}")
        if not np.isfinite(s).all():
            raise ValueError("similarity has NaN or infinite entries; leave dead units out (see Correlation.alive_a_)")
        rows = np.arange(s.shape[0]) if rows is None else np.asarray(rows)
        cols = np.arange(s.shape[1]) if cols is None else np.asarray(cols)
        local, value = (bipartite_matching if self.method == "bipartite" else semi_matching)(s)
        paired = local >= 0
        self.units_ = rows
        self.partner_ = np.where(paired, cols[np.maximum(local, 0)], -1)
        self.value_ = value
        self.curve_ = np.sort(value[paired])[::-1]
        self.mean_ = float(self.curve_.mean()) if len(self.curve_) else 0.0
        self.total_ = float(self.curve_.sum())
        self.unpaired_fraction_ = float(np.mean(~paired | (value < self.threshold)))
        self.distinct_partners_ = int(len(np.unique(local[paired])))
        return self
