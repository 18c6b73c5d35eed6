"""Sparse prediction: the exact lasso from moments equals scikit-learn's, and finds planted groups."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso

from protoscope.analyze.align import SEED_PENALTIES, Moments, SparsePrediction, correlations
from protoscope.analyze.align.passes import analyze_pair
from protoscope.analyze.align.pair import penalty_sweep
from protoscope.study import AlignSpec

from .planted import grouped_pair, shared_causes_pair


pytestmark = pytest.mark.usefixtures("one_thread")  # FISTA multiplies tiny matrices thousands of times: one thread is faster


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


def test_the_align_stage_settings_converge_and_equal_sklearn_lasso():
    """The penalties, iteration budget and tolerance the align stage uses, on correlated units.

    Tolerance: FISTA stops once a step is below tol (relative to the largest weight, at most 1).
    Where the slowest direction of the quadratic shrinks by about 1 - 1/κ per step (κ the condition
    number of corr(A, A), ~200 here), what is left after such a step is about κ steps: weights are
    checked to tol·κ (2e-4 here; 10x earlier stopping already exceeds it), and a support may differ
    only by weights below that. The loss, Table 1's entry (0 to 0.5, shown to 3 decimals), to 1e-6.
    """
    spec = AlignSpec()
    penalties = penalty_sweep(spec)
    a, b = shared_causes_pair()
    corr = correlations(a, b)
    eig = np.linalg.eigvalsh(corr.within_a_)
    kappa = eig.max() / eig.min()
    assert 100 < kappa < 300  # ill-conditioned enough that the budget matters
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        sparse = SparsePrediction(penalties, spec.sparse_iter).fit(corr.within_a_, corr.between_)  # as the stage calls it
    assert sparse.converged_.all() and sparse.n_iter_.max() > 500
    atol = sparse.tol * kappa
    xa, xb = seed_normalized(a), seed_normalized(b)
    for k, lam in enumerate(penalties):
        ref = Lasso(alpha=lam, fit_intercept=False, tol=1e-12, max_iter=100_000).fit(xa, xb)
        np.testing.assert_allclose(sparse.coef_[k], ref.coef_, rtol=0, atol=atol, err_msg=f"penalty {lam:.3g}")
        loss = 0.5 * np.mean(((xb - xa @ ref.coef_.T) ** 2).sum(1))
        assert sparse.loss_[k] == pytest.approx(loss, abs=1e-6), lam
        differ = (sparse.coef_[k] != 0) != (ref.coef_ != 0)
        assert np.all(np.abs(ref.coef_[differ]) < atol) and np.all(np.abs(sparse.coef_[k][differ]) < atol), lam
    assert sparse.n_significant_[penalties.index(1e-2)].sum() < sparse.n_significant_[penalties.index(1e-5)].sum()


def test_an_exhausted_budget_is_reported():
    a, b = shared_causes_pair()
    corr = correlations(a, b)
    penalties = [1.0, 1e-2, 1e-4]
    with pytest.warns(ConvergenceWarning, match=r"max_iter=5 .*penalties 0\.01, 0\.0001;"):
        sparse = SparsePrediction(penalties, max_iter=5).fit(corr.within_a_, corr.between_)
    assert sparse.converged_.tolist() == [True, False, False]  # penalty 1 zeroes every weight at once
    assert sparse.n_iter_.tolist() == [1, 5, 5]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        assert SparsePrediction(penalties, max_iter=5000).fit(corr.within_a_, corr.between_).converged_.all()


def test_the_align_stage_records_an_exhausted_budget():
    a, b = shared_causes_pair(n=500, units=12, causes=4)
    spec = AlignSpec(penalties=[1.0, 1e-3], sparse_iter=5, mi_samples=0)
    with pytest.warns(ConvergenceWarning, match="0.001"):
        ds, metrics = analyze_pair(Moments().partial_fit(a, b), None, spec)
    assert ds["sparse_converged"].values.tolist() == [True, False, False]  # + the cluster penalty 10^-2.6
    assert metrics["sparse_converged@1"] == 1.0 and metrics["sparse_converged@0.001"] == 0.0
