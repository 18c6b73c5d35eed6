"""Percentile-binned mutual information agrees with scikit-learn on the same contingency tables."""

import numpy as np
import pytest
import torch
from sklearn.metrics import mutual_info_score

from protoscope.errors import UserError

from protoscope.analyze.align import Matching, MutualInformation
from protoscope.analyze.align.mutual_info import RowSampler, percentile_codes

from .planted import permuted_pair


def test_bins_hold_a_special_zero_bin_and_equal_mass_above_it():
    rng = np.random.default_rng(0)
    x = np.maximum(rng.standard_normal((4000, 3)), 0)  # about half exact zeros
    codes, n_bins = percentile_codes(torch.as_tensor(x), bin_mass=0.05)
    codes = codes.numpy()
    assert n_bins == 21
    np.testing.assert_array_equal(codes == 0, x <= 1e-6)
    for u in range(3):
        counts = np.bincount(codes[:, u], minlength=n_bins)[1:]
        positive = (x[:, u] > 1e-6).sum()
        assert np.all(np.abs(counts - positive / 20) <= 2)  # 5 % of the positive mass each
        # bins are ordered: larger codes hold larger values
        means = [x[codes[:, u] == c, u].mean() for c in range(1, n_bins)]
        assert np.all(np.diff(means) > 0)


def test_mutual_information_equals_sklearn_on_every_pair():
    a, b, _ = permuted_pair(n=1500, units=5)
    mi = MutualInformation().fit(a, b)
    for i in range(5):
        for j in range(5):
            expected = mutual_info_score(mi.codes_a_[:, i], mi.codes_b_[:, j])  # nats, same tables
            assert mi.mi_[i, j] == pytest.approx(expected, abs=1e-10)
    assert np.all(mi.mi_ <= np.minimum.outer(mi.entropy_a_, mi.entropy_b_) + 1e-9)


def test_matching_on_mutual_information_recovers_the_permutation():
    a, b, perm = permuted_pair(n=3000, units=8, noise=0.2)
    mi = MutualInformation().fit(a, b)
    match = Matching("bipartite").fit(mi.mi_)
    np.testing.assert_array_equal(match.partner_, np.argsort(perm))


def test_a_constant_unit_has_zero_information_not_nan():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((300, 2))
    a[:, 1] = 0.0
    mi = MutualInformation().fit(a, a)
    assert np.isfinite(mi.mi_).all() and mi.mi_[1].max() < 1e-12 and mi.mi_[:, 1].max() < 1e-12
    assert mi.mi_[0, 0] > 1.0


def test_row_sampler_keeps_a_fixed_size_spread_over_the_stream():
    sampler = RowSampler(size=100, expected=1000, seed=0)
    x = torch.arange(1000.0)[:, None]
    for start in range(0, 1000, 64):
        sampler.add(x[start : start + 64], 2 * x[start : start + 64])
    rows_a, rows_b = sampler.rows()
    assert len(rows_a) == 100 and torch.equal(rows_b, 2 * rows_a)
    assert rows_a.min() < 100 and rows_a.max() > 900  # from the whole stream


def test_blocks_of_units_give_the_values_of_all_tables_at_once():
    """The streamed MI (a block of B units at a time, sized to memory_gb) equals the MI of every
    contingency table made at once, bit for bit, down to one unit per block."""
    from protoscope.analyze.align.mutual_info import (block_units, block_units_need, joint_counts,
                                                      mutual_info_from_counts, percentile_codes)

    gen = torch.Generator().manual_seed(3)
    a, b = torch.relu(torch.randn(400, 9, generator=gen)), torch.relu(torch.randn(400, 7, generator=gen))
    codes_a, bins = percentile_codes(a)
    codes_b, _ = percentile_codes(b)
    at_once = mutual_info_from_counts(joint_counts(codes_a, codes_b, bins)).numpy()

    def gib(k: int) -> float:  # two one-hot blocks of k units and k² tables, as block_units budgets them
        return (k * k * bins * bins * 64 + 2 * k * 400 * bins * 4) / 2**30 * (1 + 1e-9)

    one = block_units_need(400, bins)
    assert one == pytest.approx(gib(1))
    for memory_gb, side in ((2.0, None), (gib(3), 3), (gib(1), 1)):  # every unit at once, three, one per block
        assert side is None or block_units(400, bins, memory_gb) == side
        assert np.array_equal(MutualInformation(memory_gb=memory_gb).fit(a, b).mi_, at_once)
    with pytest.raises(UserError, match=f"needs at least {one:.2f} GiB"):  # not even one pair fits: the number
        MutualInformation(memory_gb=one / 2).fit(a, b)
