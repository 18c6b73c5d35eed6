"""Linear CKA from moments: equal to a direct Gram-matrix computation, and invariant as published."""

import numpy as np
import pytest
from scipy.stats import ortho_group

from protoscope.analyze.align import CKA, Moments, linear_cka


def gram_cka(x, y, debiased):
    """Reference straight from the definitions, on n x n Gram matrices."""
    n = len(x)
    if not debiased:  # HSIC = tr(K H L H) / (n-1)^2 with linear kernels
        h = np.eye(n) - 1.0 / n
        hsic = lambda k, l: np.trace(k @ h @ l @ h)
    else:  # Song et al. (2012) unbiased HSIC, on kernels of centered features (as Kornblith et al.)
        x, y = x - x.mean(0), y - y.mean(0)

        def hsic(k, l):
            k, l = k.copy(), l.copy()
            np.fill_diagonal(k, 0)
            np.fill_diagonal(l, 0)
            one = np.ones(n)
            return (np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
                    - 2 / (n - 2) * (one @ k @ l @ one)) / (n * (n - 3))
    k, l = x @ x.T, y @ y.T
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_from_streamed_moments_equals_the_gram_computation(debiased):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 7)) + 5.0
    y = np.tanh(x @ rng.standard_normal((7, 4))) + 0.3 * rng.standard_normal((60, 4))
    m = Moments()
    for start in range(0, 60, 17):
        m.partial_fit(x[start : start + 17], y[start : start + 17])
    assert m.cka(0, 1, debiased) == pytest.approx(gram_cka(x, y, debiased), rel=1e-8)


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling(debiased):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((80, 6))
    y = x[:, :4] @ rng.standard_normal((4, 5)) + 0.5 * rng.standard_normal((80, 5))
    q = ortho_group.rvs(5, random_state=2)
    base = linear_cka(x, y, debiased)
    assert linear_cka(x, y @ q, debiased) == pytest.approx(base, rel=1e-9)
    assert linear_cka(3.7 * x, y, debiased) == pytest.approx(base, rel=1e-9)
    assert linear_cka(x + 10.0, y, debiased) == pytest.approx(base, rel=1e-9)  # and to shifts
    assert linear_cka(x, x @ ortho_group.rvs(6, random_state=3), debiased) == pytest.approx(1.0)
    # not invariant to arbitrary invertible linear maps: scaling one axis changes it
    assert linear_cka(x, y * [1, 1, 1, 1, 20], debiased) != pytest.approx(base, rel=1e-3)


def test_cka_matrix_over_blocks_is_symmetric_with_unit_diagonal():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((50, 3))
    blocks = [x, x @ rng.standard_normal((3, 3)), rng.standard_normal((50, 2))]
    cka = CKA(debiased=True).fit(Moments(names=["a", "b", "c"]).partial_fit(*blocks))
    assert cka.names_ == ["a", "b", "c"]
    np.testing.assert_allclose(cka.matrix_, cka.matrix_.T)
    np.testing.assert_allclose(np.diag(cka.matrix_), 1.0)
    assert cka.matrix_[0, 1] > 0.5 > 0.2 > abs(cka.matrix_[0, 2])  # a linear image of x vs noise


@pytest.mark.parametrize("debiased", [False, True])
def test_every_block_pair_of_a_many_block_stream_equals_the_gram_computation(debiased):
    rng = np.random.default_rng(5)
    base = np.maximum(rng.standard_normal((40, 3)), 0)
    blocks = [base @ rng.uniform(0, 1, (3, d)) + 0.2 * rng.standard_normal((40, d)) + 3 for d in (2, 5, 4, 3)]
    m = Moments()
    for start in range(0, 40, 9):
        m.partial_fit(*[b[start : start + 9] for b in blocks])
    for i in range(4):
        for j in range(4):
            assert m.cka(i, j, debiased) == pytest.approx(gram_cka(blocks[i], blocks[j], debiased), rel=1e-8)


@pytest.mark.parametrize("debiased", [False, True])
def test_the_in_memory_cka_matrix_equals_the_reference_and_the_streamed_one(debiased):
    """`cka_matrix` (Gram matrices, for many blocks of few samples: every epoch of a tracked run)
    against the definitions above and against `CKA` on `Moments`, block pair by block pair."""
    from protoscope.analyze.align.cka import cka_matrix

    rng = np.random.default_rng(6)
    base = np.maximum(rng.standard_normal((30, 3)), 0)
    blocks = [base @ rng.uniform(0, 1, (3, d)) + 0.3 * rng.standard_normal((30, d)) + 2 for d in (4, 2, 6, 3, 5)]
    matrix = cka_matrix(blocks, debiased)
    streamed = CKA(debiased).fit(Moments().partial_fit(*blocks)).matrix_
    np.testing.assert_allclose(matrix, streamed, rtol=1e-8, atol=1e-12)
    for i in range(5):
        for j in range(i + 1, 5):
            assert matrix[i, j] == pytest.approx(gram_cka(blocks[i], blocks[j], debiased), rel=1e-8)
    assert np.ptp(matrix[np.triu_indices(5, 1)]) > 0.05  # the blocks differ: a matrix of ones would not pass
