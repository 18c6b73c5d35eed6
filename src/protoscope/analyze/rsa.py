"""Representational similarity over training: RDMs of a fixed stimulus set per run × epoch × layer.

RDMs are rsatoolbox `RDMs` objects (one per epoch, `run`/`epoch`/`layer` as rdm
descriptors, `image`/`category` as pattern descriptors), saved per (run, layer)
as ``STORE/rsa/<run>/<layer>.hdf5`` with rsatoolbox's own symmetric save/load.
From them come the trajectory metrics of Tousi, Kim & Mur:

- ``rsa_consecutive_<method>`` at epoch e: similarity of the RDMs at the previous stored epoch and e;
- ``rsa_vs_final_<method>``: similarity of each epoch's RDM to the last epoch's;
- ``rsa_within`` / ``rsa_between`` (``space`` = the category, or ``mean`` over categories): mean
  dissimilarity between two images of that category / between one of it and one of another;
- ``rsa_separation``: between − within, how far a category stands apart from the others;
- ``rsa_separation_chance`` (``space`` = ``p99``): the 99th percentile of the mean separation over
  200 shuffles of the images' categories, the level any grouping of that size reaches by chance.

Distances: ``correlation`` (1 − Pearson r between two images' unit patterns, the default),
``euclidean`` (rsatoolbox's: squared Euclidean distance divided by the number of units) and
``crossnobis``. A deterministic network measures each image once, so crossnobis needs another kind
of repetition: its conditions are the *categories*, each stimulus image is one measurement of its
category, the folds are interleaved partitions of each category's images (image k of a category
goes to fold k mod `folds`), and the noise precision is estimated from the images' residuals
around their category means (rsatoolbox `prec_from_measurements`, diagonal shrinkage). Its RDM is
therefore category × category: it gives ``rsa_between`` but no ``rsa_within``.
"""

from __future__ import annotations

import warnings

import numpy as np
from rsatoolbox.data import Dataset
from rsatoolbox.rdm import RDMs, calc_rdm, compare, concat

from ..errors import UserError
from ..store.activations import Activations

# our name -> rsatoolbox's compare() method
COMPARE_METHODS = {"pearson": "corr", "spearman": "spearman", "cosine": "cosine"}
# crossnobis whitens with a units × units precision matrix: keep it small enough to invert quickly
MAX_CROSSNOBIS_UNITS = 4096


# --------------------------------------------------------------------------- RDMs


def _where(acts: Activations, epoch: int | None = None) -> str:
    return f"{acts.run}/{acts.layer}" + (f" epoch {epoch}" if epoch is not None else "")


def epoch_rdms(acts: Activations, distance: str = "correlation", folds: int = 2) -> RDMs:
    """One RDM per loaded epoch of `acts`, with run/epoch/layer descriptors.

    Raises a UserError where a distance is undefined (an image with the same value on every unit,
    under correlation distance) rather than returning NaNs.
    """
    if distance not in ("correlation", "euclidean", "crossnobis"):
        raise UserError(f"Unknown RSA distance {distance!r}; valid: correlation, euclidean, crossnobis")
    values = acts.values.astype(np.float64)
    names = np.asarray(acts.categories, dtype=object)[acts.labels].astype(str)
    if distance == "correlation":
        flat = np.ptp(values, axis=2) == 0  # (epoch, image): a pattern with no variance over units
        if flat.any():
            e = int(np.argmax(flat.any(axis=1)))
            raise UserError(
                f"{_where(acts, acts.epochs[e])}: {int(flat[e].sum())} of {values.shape[1]} stimulus images give the "
                "same value on every unit (a silent or one-unit layer), so their correlation distance is undefined. "
                "Use `rsa.distance: euclidean`, or leave the layer out of `rsa.layers`.")
    rdms = []
    for i, epoch in enumerate(acts.epochs):
        descriptors = {"run": acts.run, "layer": acts.layer, "epoch": int(epoch)}
        if distance == "crossnobis":
            rdms.append(_crossnobis(acts, values[i], names, folds, descriptors))
        else:
            data = Dataset(values[i], obs_descriptors={"image": np.arange(len(names)), "category": names})
            rdms.append(_tagged(calc_rdm(data, method=distance), descriptors))
    out = concat(rdms) if len(rdms) > 1 else rdms[0]  # rsatoolbox's concat of one drops its rdm descriptors
    spread = np.ptp(out.dissimilarities, axis=1)
    if (spread == 0).any():
        e = acts.epochs[int(np.argmax(spread == 0))]
        raise UserError(
            f"{_where(acts, e)}: every pair of probe patterns is equally dissimilar (every unit constant over the "
            "stimulus set?), so RDM correlations are undefined. Leave the layer out of `rsa.layers`.")
    return out


def _crossnobis(acts: Activations, values: np.ndarray, names: np.ndarray, folds: int, descriptors: dict) -> RDMs:
    """Category × category cross-validated Mahalanobis RDM; see the module docstring for the partitions."""
    from rsatoolbox.data.noise import prec_from_measurements

    if values.shape[1] > MAX_CROSSNOBIS_UNITS:
        raise UserError(f"{_where(acts)}: crossnobis whitens with a units × units matrix and this layer has "
                        f"{values.shape[1]} units (more than {MAX_CROSSNOBIS_UNITS}); use `rsa.features: mean` "
                        "or another distance.")
    counts = {c: int((names == c).sum()) for c in np.unique(names)}
    few = {c: n for c, n in counts.items() if n < folds}
    if few or len(counts) < 2:
        raise UserError(f"{_where(acts)}: crossnobis needs at least two categories with `rsa.folds` ({folds}) probe "
                        f"images each; images per category: {counts}.")
    fold = np.empty(len(names), dtype=np.int64)
    for c in counts:  # interleaved: image k of a category goes to fold k mod folds
        index = np.flatnonzero(names == c)
        fold[index] = np.arange(len(index)) % folds
    data = Dataset(values, obs_descriptors={"category": names, "fold": fold})
    with warnings.catch_warnings():  # rsatoolbox casts the averaged-away fold descriptor through NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        noise = prec_from_measurements(data, obs_desc="category", method="shrinkage_diag")
        rdm = calc_rdm(data, method="crossnobis", descriptor="category", noise=noise, cv_descriptor="fold")
    return _tagged(rdm, descriptors)


def _tagged(rdm: RDMs, descriptors: dict) -> RDMs:
    """One RDM with run/layer/epoch as rdm descriptors (and no noise matrix riding along in `descriptors`)."""
    rdm.descriptors = {}
    rdm.rdm_descriptors.update({k: [v] for k, v in descriptors.items()})
    return rdm


def compare_rdms(a: RDMs, b: RDMs, method: str = "pearson") -> np.ndarray:
    """(len(a), len(b)) similarities between every RDM of `a` and every RDM of `b` (rsatoolbox.compare)."""
    if method not in COMPARE_METHODS:
        raise UserError(f"Unknown RDM comparison {method!r}; valid: {', '.join(COMPARE_METHODS)}")
    return np.atleast_2d(compare(a, b, method=COMPARE_METHODS[method]))


# --------------------------------------------------------------------------- categories


def category_dissimilarity(matrices: np.ndarray, pattern_categories, categories) -> tuple[np.ndarray, np.ndarray]:
    """Mean within- and between-category dissimilarity per category: two (epoch, category) arrays.

    `matrices` is (epoch, pattern, pattern) with a zero diagonal. Within c: the mean over pairs of
    distinct patterns both in c; between c: over pairs with one pattern in c and one outside.
    NaN where a category has too few patterns (within: < 2; between: none in or none outside).
    """
    matrices = np.asarray(matrices, dtype=np.float64)
    pattern_categories = np.asarray(pattern_categories).astype(str)
    onehot = (pattern_categories[:, None] == np.asarray(categories, dtype=str)[None, :]).astype(np.float64)
    n = onehot.sum(axis=0)  # patterns per category
    sums = onehot.T @ matrices @ onehot  # (epoch, category, category): summed dissimilarity between categories
    within_sum = np.diagonal(sums, axis1=1, axis2=2)
    between_sum = sums.sum(axis=2) - within_sum
    with np.errstate(invalid="ignore", divide="ignore"):
        within = within_sum / (n * (n - 1))  # ordered pairs: the diagonal (i == j) contributes 0
        between = between_sum / (n * (len(pattern_categories) - n))
    within[:, n < 2] = np.nan
    between[:, (n == 0) | (n == len(pattern_categories))] = np.nan
    return within, between


def separation_chance(matrices: np.ndarray, pattern_categories, categories, permutations: int = 200,
                      quantile: float = 0.99, seed: int = 0) -> np.ndarray:
    """Per epoch, the `quantile` of the mean category separation (between − within) with the
    category labels shuffled: how large a separation the RDM gives any grouping of its images of
    the same sizes. A separation above it is category structure, not chance."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(pattern_categories).astype(str)
    shuffled = []
    for _ in range(permutations):
        within, between = category_dissimilarity(matrices, rng.permutation(labels), categories)
        shuffled.append(np.nanmean(between - within, axis=1))
    return np.quantile(np.stack(shuffled), quantile, axis=0)


# --------------------------------------------------------------------------- metrics


def trajectory_metrics(rdms: RDMs, categories, methods=("pearson", "spearman")) -> list[dict]:
    """Rows (epoch, metric, space, value) for one run × layer's RDMs, ordered by epoch."""
    epochs = [int(e) for e in rdms.rdm_descriptors["epoch"]]
    order = np.argsort(epochs)
    rdms = rdms[order.tolist()] if len(order) > 1 else rdms
    epochs = [epochs[i] for i in order]
    rows = []
    for method in methods:
        sim = compare_rdms(rdms, rdms, method)
        for i in range(1, len(epochs)):
            rows.append({"epoch": epochs[i], "metric": f"rsa_consecutive_{method}", "value": float(sim[i - 1, i])})
        for i, epoch in enumerate(epochs):
            rows.append({"epoch": epoch, "metric": f"rsa_vs_final_{method}", "value": float(sim[i, -1])})
    matrices, names = rdms.get_matrices(), rdms.pattern_descriptors["category"]
    within, between = category_dissimilarity(matrices, names, categories)
    for name, table in (("rsa_within", within), ("rsa_between", between), ("rsa_separation", between - within)):
        for i, epoch in enumerate(epochs):
            finite = np.isfinite(table[i])
            for c in np.flatnonzero(finite):
                rows.append({"epoch": epoch, "metric": name, "space": str(categories[c]), "value": float(table[i, c])})
            if finite.any():
                rows.append({"epoch": epoch, "metric": name, "space": "mean", "value": float(table[i, finite].mean())})
    if not np.isfinite(within).any():  # crossnobis: category RDMs have no within-category pairs
        return rows
    chance = separation_chance(matrices, names, categories)
    rows += [{"epoch": epoch, "metric": "rsa_separation_chance", "space": "p99", "value": float(chance[i])}
             for i, epoch in enumerate(epochs)]
    return rows


def trajectory_embedding(rdms: RDMs, method: str = "pearson", seed: int = 0) -> np.ndarray | None:
    """(len(rdms), 2) MDS coordinates of RDMs, from their pairwise distances 1 − similarity; None
    where they cannot be computed (nearly identical RDMs can leave MDS with no solution)."""
    from sklearn.manifold import MDS

    sim = compare_rdms(rdms, rdms, method)
    dist = np.clip(1 - (sim + sim.T) / 2, 0, None)
    np.fill_diagonal(dist, 0)
    if not np.isfinite(dist).all():
        return None
    if len(dist) < 3:
        return np.column_stack([dist[0] if len(dist) else [], np.zeros(len(dist))])
    import inspect

    params = inspect.signature(MDS).parameters
    if "metric_mds" in params:  # scikit-learn >= 1.8
        mds = MDS(n_components=2, metric="precomputed", init="classical_mds", n_init=1, random_state=seed)
    else:
        mds = MDS(n_components=2, dissimilarity="precomputed", n_init=4, random_state=seed)
    try:
        xy = mds.fit_transform(dist)
    except ValueError:  # scikit-learn's classical start meets NaN when RDMs are nearly identical
        return None
    return xy if np.isfinite(xy).all() else None


# --------------------------------------------------------------------------- what the stage checks


def check_categories(labels, categories) -> None:
    """Within- vs between-category dissimilarity needs a stimulus set of two or more categories."""
    present = np.unique(np.asarray(labels))
    if len(present) < 2:
        raise UserError(
            f"The RSA stimulus set has a single category ({categories[int(present[0])]!r}): within- vs "
            "between-category dissimilarity needs two or more. Set `rsa.data` to a labelled data set "
            "with several classes.")


def metric_settings(spec) -> dict:
    """The `rsa` settings the metrics depend on (figures-only ones left out)."""
    return spec.model_dump(mode="json", exclude={"snapshots", "batch_size"})


