"""Tracking across training: identity epochs from planted drift, and prototype similarity of matched units."""

import numpy as np

from protoscope.analyze.align import IdentityTracking, correlations, prototype_similarity


def test_identity_epoch_is_when_a_unit_starts_to_stay_like_its_final_self():
    rng = np.random.default_rng(0)
    final = rng.standard_normal((2000, 4))
    # unit u matches its final self from epoch u on; unit 3 also is dead at epoch 0
    corrs = {}
    for epoch in range(4):
        x = rng.standard_normal((2000, 4))
        for u in range(4):
            if epoch >= u:
                x[:, u] = final[:, u] + 0.1 * x[:, u]
        if epoch == 0:
            x[:, 3] = 0.0
        corrs[epoch] = correlations(x, final)
    track = IdentityTracking(threshold=0.5).fit(corrs)
    assert track.epochs_ == [0, 1, 2, 3]
    assert track.identity_epoch_.tolist() == [0, 1, 2, 3]
    assert not track.alive_[0, 3] and track.self_corr_[0, 3] == 0 and np.isfinite(track.self_corr_).all()
    assert np.all(np.diff(track.mean_self_corr_) > 0)
    assert track.self_matched_[-1] == 1.0


def test_matched_units_with_the_same_prototypes_score_above_the_baseline():
    rng = np.random.default_rng(1)
    protos_a = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    perm = rng.permutation(6)
    protos_b = protos_a[perm]  # B's unit j has A's unit perm[j]'s prototype
    partner = np.argsort(perm)
    sims, baseline = prototype_similarity(protos_a, protos_b, partner)
    np.testing.assert_allclose(sims, 1.0)
    assert baseline < 0.5
    mask = np.zeros((8, 8))
    mask[2:6, 2:6] = 1
    sims_masked, _ = prototype_similarity(protos_a, protos_b, np.r_[partner[:5], -1], mask)
    np.testing.assert_allclose(sims_masked[:5], 1.0)
    assert np.isnan(sims_masked[5])


def test_prototype_similarity_is_pearson_and_the_mask_restricts_it_to_the_receptive_field():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    b[:, 2:6, 2:6] = a[:, 2:6, 2:6]  # equal inside the centre, unrelated outside
    sims, baseline = prototype_similarity(a, b, np.arange(3))
    expected = [np.corrcoef(a[i].ravel().astype(float), b[i].ravel().astype(float))[0, 1] for i in range(3)]
    np.testing.assert_allclose(sims, expected, atol=1e-12)
    mask = np.zeros((8, 8))
    mask[2:6, 2:6] = 1
    masked, masked_baseline = prototype_similarity(a, b, np.arange(3), mask)
    np.testing.assert_allclose(masked, 1.0)
    assert abs(masked_baseline) < 0.5  # unmatched pairs stay uncorrelated: the mask adds no shared shape
