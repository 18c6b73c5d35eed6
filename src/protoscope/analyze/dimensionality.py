"""Effective dimensionality of a layer's representation: how many directions its activations use.

Two standard measures of one (images × units) matrix, each a number between 1 and the rank:

- **participation ratio** (Gao et al. 2017): (Σλ)² / Σλ² over the eigenvalues λ of the
  activations' covariance (centred): k equal variances give k;
- **RankMe** (Garrido et al. 2023): exp of the entropy of the normalised singular values of the
  (uncentred) activation matrix, p_k = σ_k / Σσ: k equal singular values give k.

Both from one SVD; numpy has them in two lines each, no library packages them for torch features.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-12


def participation_ratio(acts: np.ndarray) -> float:
    x = np.asarray(acts, np.float64)
    x = x - x.mean(axis=0)
    variances = np.linalg.svd(x, compute_uv=False) ** 2  # ∝ the covariance's eigenvalues
    total = variances.sum()
    return float(total ** 2 / (variances ** 2).sum()) if total > EPS else 0.0


def rankme(acts: np.ndarray) -> float:
    singular = np.linalg.svd(np.asarray(acts, np.float64), compute_uv=False)
    if singular.sum() <= EPS:
        return 0.0
    p = singular / singular.sum() + EPS
    return float(np.exp(-(p * np.log(p)).sum()))


def dimensionality_rows(acts, base: dict) -> list[dict]:
    """Metric rows (`dim_participation_ratio`, `dim_rankme`) for every epoch of stored `Activations`."""
    rows = []
    for epoch in acts.epochs:
        values = acts.at(epoch)
        rows.append(dict(base, epoch=epoch, metric="dim_participation_ratio", value=participation_ratio(values)))
        rows.append(dict(base, epoch=epoch, metric="dim_rankme", value=rankme(values)))
    return rows
