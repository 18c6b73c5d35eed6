"""Many-to-many alignment recovers planted groups: spectral clustering and hierarchical clustering of B."""

import numpy as np
from sklearn.metrics import adjusted_rand_score

from protoscope.analyze.align import MappingClustering, SparsePrediction, SpectralAlignment, correlations
from protoscope.analyze.align.clustering import mapping_block

from .planted import grouped_pair


def test_spectral_clustering_recovers_planted_groups_and_the_eigengap_finds_their_number():
    a, b, group_a, group_b = grouped_pair()
    corr = correlations(a, b)
    spectral = SpectralAlignment(tau=0.2).fit(corr.within_a_, corr.between_, corr.within_b_)
    truth = np.concatenate([group_a, group_b])
    assert spectral.suggested_k_ == 4
    assert adjusted_rand_score(truth, spectral.labels_) == 1.0
    assert spectral.sizes_a_.tolist() == [3] * 4 and spectral.sizes_b_.tolist() == [3] * 4
    assert np.all(spectral.between_ > 0.3)  # each group is shared by both nets
    # the permuted matrix is block diagonal: units of a cluster are contiguous
    assert np.all(np.diff(spectral.labels_[spectral.order_]) >= 0)


def test_refinement_splits_clusters_larger_than_alpha():
    a, b, group_a, group_b = grouped_pair()
    corr = correlations(a, b)
    coarse = SpectralAlignment(n_clusters=2, tau=0.2).fit(corr.within_a_, corr.between_, corr.within_b_)
    assert coarse.labels_.max() == 1
    refined = SpectralAlignment(n_clusters=2, tau=0.2, alpha=0.25).fit(corr.within_a_, corr.between_, corr.within_b_)
    sizes = np.bincount(refined.labels_)
    assert sizes.max() <= 0.25 * 24
    assert adjusted_rand_score(np.concatenate([group_a, group_b]), refined.labels_) == 1.0


def test_hierarchical_clustering_of_the_mapping_recovers_planted_groups():
    a, b, group_a, group_b = grouped_pair()
    corr = correlations(a, b)
    w = SparsePrediction(penalties=[10**-2.6]).fit(corr.within_a_, corr.between_).coef_[0]
    clus = MappingClustering(n_clusters=4).fit(w.T)
    np.testing.assert_array_equal(clus.block_, mapping_block(w.T))
    assert clus.block_.shape == (24, 24)
    assert adjusted_rand_score(np.concatenate([group_a, group_b]), clus.labels_) == 1.0
    assert sorted(clus.order_) == list(range(24))
