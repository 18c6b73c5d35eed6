"""Sparse prediction: which few units of net A linearly predict each unit of net B (Section 4).

The seed trains a 1×1 convolution (a linear map on channels, the same at every
position) from A's layer to B's with squared error plus an L1 penalty, after
normalizing every channel to mean 0 and sd 1/√N (N the layer's units, so each
net's total variance is 1 and a loss of 0.5 means "predicts nothing"). Its loss
is Caffe's Euclidean loss, ½·E‖b − W a‖².

That objective depends on the data only through second moments, which after
the normalization are the correlation matrices: E[a aᵀ] = corr(A,A)/N_A,
E[b aᵀ] = corr(B,A)/√(N_A N_B), E‖b‖² = 1. So instead of SGD over images we
solve it exactly from the streamed statistics with FISTA (proximal gradient
with soft thresholding, warm-started along the penalty path from large to
small) — a per-output-unit lasso, the same problem scikit-learn's `Lasso`
solves from samples (a test checks the two agree). Exact zeros make "the
significant weights of a unit" its lasso support. A penalty whose FISTA run
hits `max_iter` before its steps fall below `tol` is flagged (`converged_`) and
warned about (`ConvergenceWarning`): its weights are then only approximate.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning

# The seed's sweep: 10^0 ... 10^-5, plus 10^-2.6 (the penalty of its clustering figures).
SEED_PENALTIES = (1.0, 1e-1, 1e-2, 10**-2.6, 1e-3, 1e-4, 1e-5)


def _soft(x: torch.Tensor, t: float) -> torch.Tensor:
    return x.sign() * (x.abs() - t).clamp_min(0)


def fista_path(gram: torch.Tensor, cross: torch.Tensor, penalties, max_iter: int, tol: float):
    """min_W ½ tr(W G Wᵀ) − tr(W Cᵀ) + λ‖W‖₁ for each λ (large to small, warm starts).

    gram: (A, A) = E[a aᵀ]; cross: (B, A) = E[b aᵀ]. Returns [(W (B, A), iterations, converged)]
    in the order of `penalties`; converged: the last step fell below `tol` before `max_iter` ran out.
    """
    lipschitz = float(torch.linalg.eigvalsh(gram).max().clamp_min(1e-12))
    order = sorted(range(len(penalties)), key=lambda k: -penalties[k])
    w = torch.zeros_like(cross)
    results: dict[int, tuple[torch.Tensor, int, bool]] = {}
    for k in order:
        lam = float(penalties[k]) / lipschitz
        y, t, it, converged = w.clone(), 1.0, 0, False
        for it in range(1, max_iter + 1):
            w_next = _soft(y - (y @ gram - cross) / lipschitz, lam)
            t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
            y = w_next + ((t - 1) / t_next) * (w_next - w)
            change = float((w_next - w).abs().max())
            w, t = w_next, t_next
            if change <= tol * max(1.0, float(w.abs().max())):
                converged = True
                break
        results[k] = (w.clone(), it, converged)
    return [results[k] for k in range(len(penalties))]


def prediction_loss(w: torch.Tensor, gram: torch.Tensor, cross: torch.Tensor, total: float = 1.0) -> float:
    """½ E‖b − W a‖² from the moments (total = E‖b‖²)."""
    return 0.5 * float(total - 2 * (w * cross).sum() + ((w @ gram) * w).sum())


class SparsePrediction(BaseEstimator):
    """The seed's L1-penalized mapping layer from A's units to B's, for every penalty of a sweep.

    `fit(within_a, between)`: correlations among A's (live) units and between A's and
    B's (A rows, B columns), e.g. `Correlation.within_a_`, `Correlation.between_`.

    Parameters
    ----------
    penalties : L1 penalties λ (the seed's 10^0 … 10^-5 and 10^-2.6 by default).
    max_iter, tol : FISTA's budget and relative stopping tolerance per penalty.
    device : where to solve (default CPU).

    Attributes
    ----------
    penalties_ : as given.
    coef_ : (penalties, B units, A units) weights on the normalized activations.
    loss_ : (penalties,) ½ E‖b − W a‖² (0.5 = predicting nothing): the seed's Table 1 entries.
    n_significant_ : (penalties, B units) non-zero weights per predicted unit.
    n_iter_ : FISTA iterations per penalty.
    converged_ : (penalties,) bool, False where `max_iter` ran out first (a `ConvergenceWarning` names them).
    """

    def __init__(self, penalties=SEED_PENALTIES, max_iter: int = 2000, tol: float = 1e-6, device=None):
        self.penalties = penalties
        self.max_iter = max_iter
        self.tol = tol
        self.device = device

    def fit(self, within_a, between) -> "SparsePrediction":
        ca, cab = np.asarray(within_a, dtype=float), np.asarray(between, dtype=float)
        n_a, n_b = cab.shape
        if ca.shape != (n_a, n_a) or n_a == 0 or n_b == 0:
            raise ValueError(f"need corr(A,A) (A, A) and corr(A,B) (A, B); got {ca.shape} and {cab.shape}")
        penalties = [float(p) for p in self.penalties]
        if not penalties or min(penalties) < 0:
            raise ValueError(f"penalties must be a non-empty list of numbers >= 0, got {self.penalties}")
        device = torch.device(self.device) if self.device is not None else torch.device("cpu")
        gram = torch.as_tensor(ca / n_a, device=device)
        cross = torch.as_tensor(cab.T / np.sqrt(n_a * n_b), device=device)
        path = fista_path(gram, cross, penalties, self.max_iter, self.tol)
        self.penalties_ = np.asarray(penalties)
        self.coef_ = np.stack([w.cpu().numpy() for w, _, _ in path])
        self.loss_ = np.asarray([prediction_loss(w, gram, cross) for w, _, _ in path])
        self.n_significant_ = (self.coef_ != 0).sum(axis=2)
        self.n_iter_ = np.asarray([it for _, it, _ in path])
        self.converged_ = np.asarray([ok for _, _, ok in path], dtype=bool)
        if not self.converged_.all():
            slow = ", ".join(f"{p:.3g}" for p in self.penalties_[~self.converged_])
            warnings.warn(f"SparsePrediction: FISTA did not converge within max_iter={self.max_iter} iterations "
                          f"(tol={self.tol:g}) for the penalties {slow}; their weights are approximate. "
                          "Raise max_iter (the align stage's sparse_iter).", ConvergenceWarning, stacklevel=2)
        return self

    def weights(self, penalty: float) -> np.ndarray:
        """The (B, A) weights of the penalty closest to `penalty` (in log scale)."""
        k = int(np.argmin(np.abs(np.log10(np.maximum(self.penalties_, 1e-300)) - np.log10(max(penalty, 1e-300)))))
        return self.coef_[k]
