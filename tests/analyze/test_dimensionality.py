"""Effective dimensionality in closed form."""

import numpy as np
import pytest

from protoscope.analyze.dimensionality import participation_ratio, rankme


def test_k_equal_variances_give_k():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    # 4 orthogonal directions, each +-1 in a balanced design: covariance exactly 4 equal eigenvalues
    signs = np.array([[1 if (i >> b) & 1 else -1 for b in range(4)] for i in range(16)], float)
    acts = signs @ q[:4] * 3.0 + 5.0  # an offset: the participation ratio centres it away
    assert participation_ratio(acts) == pytest.approx(4.0)
    assert rankme(signs @ q[:4]) == pytest.approx(4.0, rel=1e-6)


def test_unequal_spectrum_by_hand():
    acts = np.diag([3.0, 1.0, 0.0])  # singular values 3, 1, 0
    p = np.array([0.75, 0.25])
    assert rankme(acts) == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-9)
    x = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, -1.0]])  # variances 8/4 and 2/4 (x n)
    assert participation_ratio(x) == pytest.approx((8 + 2) ** 2 / (8 ** 2 + 2 ** 2))


def test_silent_layer_is_zero():
    assert participation_ratio(np.ones((5, 3))) == 0.0 and rankme(np.zeros((5, 3))) == 0.0
