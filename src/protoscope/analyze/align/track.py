"""Alignment across training: when does each unit become what it finally is?

Within one run, unit i at epoch e and unit i at the final epoch are "the same
unit" by construction; how strongly they correlate says how much of the final
feature is already there. `IdentityTracking` follows that self-correlation and
the one-to-one matching between every epoch and the final one: a unit's
*identity epoch* is the first epoch from which it stays correlated with its
final self at or above a threshold. `prototype_similarity` asks the
complementary question across seeds: do units that the matching pairs also
have similar prototypes (activation-maximizing images)?
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from .correlation import Correlation
from .matching import Matching


class IdentityTracking(BaseEstimator):
    """Epoch e vs the final epoch of one run, for every e.

    `fit(correlations)`: {epoch: Correlation of (run at epoch, run at final epoch)}, every
    epoch's units being the same units (same layer of the same run).

    Attributes
    ----------
    epochs_ : sorted epochs.
    self_corr_ : (epochs, units) corr(unit at e, same unit at the end); 0 where the unit is dead
        at e or at the end (see alive_).
    alive_ : (epochs, units) whether the unit is live at e and at the end.
    mean_self_corr_ : (epochs,) mean self-correlation over live units.
    matched_mean_ : (epochs,) mean bipartite-matched correlation.
    self_matched_ : (epochs,) share of live units that bipartite matching pairs with themselves.
    identity_epoch_ : (units,) first epoch from which the unit's self-correlation stays at or above
        `threshold` (-1: never).
    """

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold

    def fit(self, correlations: dict[int, Correlation]) -> "IdentityTracking":
        if not correlations:
            raise ValueError("need at least one epoch's correlations")
        self.epochs_ = sorted(int(e) for e in correlations)
        n_units = len(correlations[self.epochs_[0]].sd_a_)
        E = len(self.epochs_)
        self.self_corr_ = np.zeros((E, n_units))
        self.alive_ = np.zeros((E, n_units), dtype=bool)
        self.mean_self_corr_ = np.zeros(E)
        self.matched_mean_ = np.zeros(E)
        self.self_matched_ = np.zeros(E)
        for k, epoch in enumerate(self.epochs_):
            c = correlations[epoch]
            if len(c.sd_a_) != n_units or len(c.sd_b_) != n_units:
                raise ValueError(f"epoch {epoch}: every epoch must have the same {n_units} units on both sides")
            both = np.intersect1d(c.alive_a_, c.alive_b_)
            rows = np.searchsorted(c.alive_a_, both)
            cols = np.searchsorted(c.alive_b_, both)
            self.self_corr_[k, both] = c.between_[rows, cols]
            self.alive_[k, both] = True
            self.mean_self_corr_[k] = self.self_corr_[k, both].mean() if len(both) else 0.0
            if c.between_.size:
                match = Matching("bipartite", self.threshold).fit(c.between_, c.alive_a_, c.alive_b_)
                self.matched_mean_[k] = match.mean_
                self.self_matched_[k] = float(np.mean(match.partner_ == match.units_))
        held = self.alive_ & (self.self_corr_ >= self.threshold)
        # Held from epoch k on: a reversed cumulative "and" over epochs.
        from_here = np.flip(np.logical_and.accumulate(np.flip(held, 0), axis=0), 0)
        first = np.argmax(from_here, axis=0)
        self.identity_epoch_ = np.where(from_here.any(0), np.asarray(self.epochs_)[first], -1)
        return self


def prototype_similarity(protos_a, protos_b, partner, mask=None) -> tuple[np.ndarray, float]:
    """Pixel correlation of each matched pair's prototypes, and the mean over all pairs (the baseline).

    protos_*: (units, S, S, 3) images; partner: A unit -> B unit (-1: none); mask: (S, S)
    weights (e.g. the layer's receptive-field mask) applied before correlating.
    Returns (similarity per A unit, NaN where unpaired; mean similarity of all A×B pairs).
    """
    def standardized(p):
        # A weighted Pearson correlation: the mask weights pixels; it is not multiplied into the
        # images, which would give every prototype the mask's shape and inflate every correlation.
        x = (np.asarray(p, dtype=np.float64) / 255.0).reshape(len(p), -1)
        w = np.ones(x.shape[1]) if mask is None else np.repeat(np.asarray(mask, dtype=np.float64).reshape(-1), 3)
        w = w / w.sum()
        x = np.sqrt(w) * (x - (x * w).sum(1, keepdims=True))
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.where(norm > 0, norm, 1.0)

    za, zb = standardized(protos_a), standardized(protos_b)
    sim = za @ zb.T
    partner = np.asarray(partner)
    matched = np.full(len(za), np.nan)
    ok = partner >= 0
    matched[ok] = sim[np.flatnonzero(ok), partner[ok]]
    return matched, float(sim.mean())
