"""Many-to-many alignment: groups of units that two nets share (the seed's Sections 4 and 5).

Two views of the same question. `MappingClustering` clusters the units of both
nets by the sparse mapping's weights: the block matrix B = [I, W; Wᵀ, I] links
an A unit to the B units it predicts, and average linkage (scipy) on 1 − |B|
(weights scaled to at most 1) puts units joined by large weights next to each
other; the leaf order permutes B into near-block-diagonal form.
`SpectralAlignment` clusters the combined correlation graph
[corr(A,A), corr(A,B); corr(B,A), corr(B,B)] with correlations below τ cut,
by scikit-learn's spectral clustering on that precomputed affinity; the
eigen-gap of the normalized Laplacian suggests k, and clusters larger than a
share α of all units are split again (the seed's hierarchical refinement).
Each cluster reports its units from each net and its between-net and
within-net mean correlation: a cluster with high between-net similarity is a
subspace both nets learned, whatever the basis each chose inside it.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.cluster.hierarchy import fcluster, leaves_list, linkage
from scipy.spatial.distance import squareform
from sklearn.base import BaseEstimator
from sklearn.cluster import SpectralClustering


def mapping_block(w) -> np.ndarray:
    """B = [I, W; Wᵀ, I] for a mapping W (A units, B units)."""
    w = np.asarray(w, dtype=float)
    return np.block([[np.eye(w.shape[0]), w], [w.T, np.eye(w.shape[1])]])


class MappingClustering(BaseEstimator):
    """Hierarchical (agglomerative) clustering of B = [I, W; Wᵀ, I].

    `fit(w)`: w is (A units, B units), e.g. `SparsePrediction.weights(10**-2.6).T`.

    Attributes: block_ (B), linkage_ (scipy), order_ (leaf order over A's units then B's,
    indices into B), labels_ (flat clusters when n_clusters is set, else None).
    """

    def __init__(self, method: str = "average", n_clusters: int | None = None, optimal_ordering: bool = False):
        self.method = method
        self.n_clusters = n_clusters
        self.optimal_ordering = optimal_ordering

    def fit(self, w) -> "MappingClustering":
        w = np.abs(np.asarray(w, dtype=float))
        if w.ndim != 2 or min(w.shape) == 0:
            raise ValueError(f"need a (A units, B units) mapping, got shape {w.shape}")
        scale = w.max() if w.max() > 0 else 1.0
        self.block_ = mapping_block(w)
        similarity = np.clip(mapping_block(w / scale), 0, 1)
        distance = 1.0 - similarity
        np.fill_diagonal(distance, 0.0)
        self.linkage_ = linkage(squareform(distance, checks=False), method=self.method,
                                optimal_ordering=self.optimal_ordering)
        self.order_ = leaves_list(self.linkage_)
        self.labels_ = (fcluster(self.linkage_, self.n_clusters, criterion="maxclust") - 1
                        if self.n_clusters else None)
        return self


def laplacian_spectrum(affinity) -> np.ndarray:
    """Eigenvalues (ascending) of the normalized Laplacian I − D^-½ A D^-½."""
    a = np.asarray(affinity, dtype=float)
    d = a.sum(1)
    inv = np.where(d > 0, 1 / np.sqrt(np.maximum(d, 1e-300)), 0.0)
    lap = np.eye(len(a)) - inv[:, None] * a * inv[None, :]
    return np.linalg.eigvalsh((lap + lap.T) / 2)


def eigengap_k(eigenvalues, max_k: int) -> int:
    """The k whose gap λ_{k+1} − λ_k is the largest, for k in 1..max_k."""
    ev = np.asarray(eigenvalues)[: max_k + 1]
    if len(ev) < 2:
        return 1
    return int(np.argmax(np.diff(ev))) + 1


class SpectralAlignment(BaseEstimator):
    """Spectral clustering of the combined correlation graph of two nets.

    `fit(within_a, between, within_b)`: correlation matrices (see `Correlation`).

    Parameters
    ----------
    n_clusters : k; None picks it by the eigen-gap (at most `max_clusters`).
    tau : correlations below τ are cut from the graph (negative ones always).
    alpha : clusters holding more than this share of all units are split again
        (recursively, k by the sub-graph's eigen-gap, at least 2); None: no refinement.
    max_clusters : the largest k the eigen-gap may suggest (default: a quarter of the units).
    assign_labels, random_state : passed to scikit-learn's SpectralClustering.

    Attributes
    ----------
    affinity_ : the thresholded graph; eigenvalues_ : its normalized Laplacian's spectrum;
    suggested_k_ : the eigen-gap's k; labels_ : cluster of each unit (A's units, then B's);
    order_ : units sorted by cluster (to permute the matrix for the figure);
    sizes_a_, sizes_b_ : each cluster's units from A and from B;
    between_ : each cluster's mean corr(A unit, B unit) (NaN where one net has no unit in it);
    within_ : each cluster's mean correlation between distinct units of the same net (NaN if none).
    """

    def __init__(self, n_clusters: int | None = None, tau: float = 0.2, alpha: float | None = None,
                 max_clusters: int | None = None, assign_labels: str = "cluster_qr", random_state: int = 0):
        self.n_clusters = n_clusters
        self.tau = tau
        self.alpha = alpha
        self.max_clusters = max_clusters
        self.assign_labels = assign_labels
        self.random_state = random_state

    def fit(self, within_a, between, within_b) -> "SpectralAlignment":
        wa, ab, wb = (np.asarray(m, dtype=float) for m in (within_a, between, within_b))
        n_a, n_b = ab.shape
        if wa.shape != (n_a, n_a) or wb.shape != (n_b, n_b) or n_a + n_b < 2:
            raise ValueError(f"need corr(A,A), corr(A,B), corr(B,B); got {wa.shape}, {ab.shape}, {wb.shape}")
        combined = np.block([[wa, ab], [ab.T, wb]])
        affinity = np.where(combined >= self.tau, combined, 0.0)
        affinity = np.maximum(affinity, affinity.T)
        np.fill_diagonal(affinity, 1.0)
        n = len(affinity)
        self.affinity_ = affinity
        self.eigenvalues_ = laplacian_spectrum(affinity)
        max_k = self.max_clusters or max(2, n // 4)
        self.suggested_k_ = eigengap_k(self.eigenvalues_, min(max_k, n - 1))
        k = min(self.n_clusters or self.suggested_k_, n)
        labels = self._split(np.arange(n), k)
        if self.alpha is not None:
            labels = self._refine(labels, int(np.floor(self.alpha * n)))
        # Relabel by first appearance so labels are stable and compact.
        _, first = np.unique(labels, return_index=True)
        rank = {old: new for new, old in enumerate(labels[np.sort(first)])}
        self.labels_ = np.array([rank[x] for x in labels])
        is_b = np.arange(n) >= n_a
        self.order_ = np.lexsort((is_b, self.labels_))
        self._cluster_stats(combined, is_b)
        return self

    def _split(self, members: np.ndarray, k: int) -> np.ndarray:
        if k <= 1 or len(members) <= k:
            return np.zeros(len(members), dtype=int) if k <= 1 else np.arange(len(members))
        sub = self.affinity_[np.ix_(members, members)]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not fully connected.*")
            model = SpectralClustering(n_clusters=k, affinity="precomputed", assign_labels=self.assign_labels,
                                       random_state=self.random_state)
            return model.fit_predict(sub)

    def _refine(self, labels: np.ndarray, limit: int) -> np.ndarray:
        labels = labels.copy()
        limit = max(limit, 1)
        queue = [c for c in np.unique(labels) if (labels == c).sum() > limit]
        next_label = labels.max() + 1
        while queue:
            c = queue.pop()
            members = np.flatnonzero(labels == c)
            sub = self.affinity_[np.ix_(members, members)]
            k = max(2, eigengap_k(laplacian_spectrum(sub), min(len(members) - 1, max(2, len(members) // 4))))
            parts = self._split(members, k)
            if len(np.unique(parts)) < 2:
                continue
            for p in np.unique(parts)[1:]:
                labels[members[parts == p]] = next_label
                if (parts == p).sum() > limit:
                    queue.append(next_label)
                next_label += 1
            if (parts == np.unique(parts)[0]).sum() > limit:
                queue.append(c)
        return labels

    def _cluster_stats(self, combined: np.ndarray, is_b: np.ndarray) -> None:
        k = self.labels_.max() + 1
        self.sizes_a_ = np.zeros(k, dtype=int)
        self.sizes_b_ = np.zeros(k, dtype=int)
        self.between_ = np.full(k, np.nan)
        self.within_ = np.full(k, np.nan)
        for c in range(k):
            a = np.flatnonzero((self.labels_ == c) & ~is_b)
            b = np.flatnonzero((self.labels_ == c) & is_b)
            self.sizes_a_[c], self.sizes_b_[c] = len(a), len(b)
            if len(a) and len(b):
                self.between_[c] = combined[np.ix_(a, b)].mean()
            pairs = [combined[np.ix_(m, m)][~np.eye(len(m), dtype=bool)] for m in (a, b) if len(m) > 1]
            if pairs:
                self.within_[c] = np.concatenate(pairs).mean()
