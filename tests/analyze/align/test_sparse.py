"""Sparse prediction: the exact lasso from moments equals scikit-learn's, and finds planted groups."""

import numpy as np
import pytest
from sklearn.linear_model import Lasso

from protoscope.analyze.align import SEED_PENALTIES, SparsePrediction, correlations

from .planted import grouped_pair


def seed_normalized(x):
    """The seed's normalization on samples: each channel mean 0, sd 1/sqrt(N)."""
    return (x - x.mean(0)) / (x.std(0) * np.sqrt(x.shape[1]))


def test_solution_from_moments_equals_sklearn_lasso_on_the_samples():
    a, b, _, _ = grouped_pair(n=800, noise=0.5, seed=1)
    corr = correlations(a, b)
    penalties = [1e-2, 10**-2.6, 1e-3]
    sparse = SparsePrediction(penalties=penalties, max_iter=20000, tol=1e-10).fit(corr.within_a_, corr.between_)
    xa, xb = seed_normalized(a), seed_normalized(b)
    for k, lam in enumerate(penalties):
        # sklearn: (1 / 2n) ||y - X w||^2 + alpha ||w||_1, per output unit: the same objective.
        ref = Lasso(alpha=lam, fit_intercept=False, tol=1e-12, max_iter=100_000).fit(xa, xb)
        np.testing.assert_allclose(sparse.coef_[k], ref.coef_, atol=2e-5)
        loss = 0.5 * np.mean(((xb - xa @ ref.coef_.T) ** 2).sum(1))
        assert sparse.loss_[k] == pytest.approx(loss, abs=1e-6)


def test_planted_groups_are_recovered_and_the_loss_rises_with_the_penalty():
    a, b, group_a, group_b = grouped_pair()
    corr = correlations(a, b)
    sparse = SparsePrediction().fit(corr.within_a_, corr.between_)
    assert list(sparse.penalties_) == list(SEED_PENALTIES)
    order = np.argsort(sparse.penalties_)
    assert np.all(np.diff(sparse.loss_[order]) >= -1e-9)  # more penalty, never a better fit
    assert sparse.loss_.max() <= 0.5 + 1e-9 and sparse.loss_[order[0]] < 0.01
    w = sparse.weights(1e-2)  # (B units, A units)
    same_group = group_b[:, None] == group_a[None, :]
    assert np.all(w[~same_group] == 0)  # every weight that survives links units of one group
    assert np.all((w != 0).sum(1) >= 1)
    assert np.all(sparse.n_significant_[order[0]] >= sparse.n_significant_[order[-1]])
    assert np.all(sparse.weights(1.0) == 0)  # the largest penalty predicts nothing
