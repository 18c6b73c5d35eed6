"""One-to-one alignment recovers a planted permutation; semi-matching never totals less than matching."""

import numpy as np
import pytest

from protoscope.analyze.align import Matching, bipartite_matching, correlations, semi_matching

from .planted import permuted_pair


def test_matching_recovers_a_planted_permutation():
    a, b, perm = permuted_pair()
    corr = correlations(a, b)
    match = Matching("bipartite").fit(corr.between_, corr.alive_a_, corr.alive_b_)
    # B[:, j] = A[:, perm[j]] + noise, so A's unit i is B's unit argsort(perm)[i].
    np.testing.assert_array_equal(match.partner_, np.argsort(perm))
    np.testing.assert_allclose(b[:, match.partner_], a, atol=2.0)  # B permuted back lines up with A
    assert match.mean_ > 0.8 and match.unpaired_fraction_ == 0
    assert np.all(np.diff(match.curve_) <= 0)  # sorted high to low


def test_semi_matching_total_is_never_below_matching():
    rng = np.random.default_rng(0)
    for trial in range(20):
        shape = (int(rng.integers(2, 9)), int(rng.integers(2, 9)))
        s = rng.uniform(-1, 1, shape)
        semi = Matching("semi").fit(s)
        full = Matching("bipartite").fit(s)
        paired = full.partner_ >= 0
        assert np.all(semi.value_[paired] >= full.value_[paired])  # row by row, the best is at least the matched
        if shape[0] <= shape[1]:  # every row is paired in both: compare totals directly
            assert semi.total_ >= full.total_ - 1e-12
        assert full.distinct_partners_ == min(shape)


def test_bipartite_matching_is_the_best_assignment_by_brute_force():
    from itertools import permutations

    rng = np.random.default_rng(3)
    s = rng.uniform(-1, 1, (5, 5))
    partner, value = bipartite_matching(s)
    best = max(sum(s[i, p[i]] for i in range(5)) for p in permutations(range(5)))
    assert value.sum() == pytest.approx(best)
    assert sorted(partner) == list(range(5))
    semi_partner, semi_value = semi_matching(s)
    np.testing.assert_array_equal(semi_value, s.max(1))


def test_threshold_counts_units_without_a_good_partner_and_rectangles_leave_rows_unpaired():
    s = np.array([[0.9, 0.1], [0.2, 0.4], [0.3, 0.35]])
    m = Matching("bipartite", threshold=0.5).fit(s, rows=[4, 5, 7], cols=[10, 11])
    assert m.units_.tolist() == [4, 5, 7]
    assert m.partner_.tolist() == [10, 11, -1] or m.partner_.tolist() == [10, -1, 11]
    assert (m.partner_ == -1).sum() == 1
    assert m.unpaired_fraction_ == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="NaN"):
        Matching().fit(np.array([[np.nan, 1.0]]))
