"""Every alignment of one pair at one layer, from its streamed moments, and the rows it gives.

The align stage (`stages/alignment.py`) streams the stimulus set through the checkpoints once per job
and hands each (pair, layer) here; `protoscope.align` fits the same estimators in memory.
"""

from __future__ import annotations

import itertools

import numpy as np
import xarray as xr

from .cka import CKA
from .pair import fit_pair
from .stats import Moments
from .track import prototype_similarity


def pair_name(a: str, b: str) -> str:
    return f"{a}~{b}"


def analyze_pair(moments: Moments, sample, spec, prototypes=None) -> tuple[xr.Dataset, dict[str, float]]:
    """Every alignment of one pair at one layer (`fit_pair`, as `protoscope.align` fits it): the
    arrays (a Dataset) and the scalar metrics."""
    fit = fit_pair(moments, sample, spec)
    corr = fit.correlation
    ua, ub = corr.alive_a_, corr.alive_b_
    coords = {"unit_a": np.arange(len(corr.sd_a_)), "unit_b": np.arange(len(corr.sd_b_)),
              "a": ua, "a2": ua, "b": ub, "b2": ub}
    data = {"mean_a": ("unit_a", corr.mean_a_), "sd_a": ("unit_a", corr.sd_a_),
            "mean_b": ("unit_b", corr.mean_b_), "sd_b": ("unit_b", corr.sd_b_),
            "within_a": (("a", "a2"), corr.within_a_), "within_b": (("b", "b2"), corr.within_b_),
            "between": (("a", "b"), corr.between_)}
    metrics = {"align_dead_a": len(corr.dead_a_), "align_dead_b": len(corr.dead_b_)}
    if fit.bipartite is None:  # a net with no live unit here: nothing to align
        return xr.Dataset(data, coords), metrics
    for method, match in (("bipartite", fit.bipartite), ("semi", fit.semi)):
        data[f"partner_{method}"] = ("a", match.partner_)
        data[f"value_{method}"] = ("a", match.value_)
        metrics[f"align_corr_{method}_mean"] = match.mean_
        metrics[f"align_unpaired_{method}"] = match.unpaired_fraction_
    if prototypes is not None:
        protos_a, protos_b, mask = prototypes
        # rows are live A units, partners B unit indices; NaN where a row has no partner
        sims, baseline = prototype_similarity(protos_a[ua], protos_b, fit.bipartite.partner_, mask)
        data["proto_similarity"] = ("a", sims)
        if np.isfinite(sims).any():
            metrics["align_proto_matched"] = float(np.nanmean(sims))
            metrics["align_proto_baseline"] = baseline
    if fit.mutual_info is not None:
        data["mi"] = (("a", "b"), fit.mutual_info.mi_)
        for method, match in (("bipartite", fit.mi_bipartite), ("semi", fit.mi_semi)):
            data[f"partner_mi_{method}"] = ("a", match.partner_)
            metrics[f"align_mi_{method}_mean"] = match.mean_
        metrics["align_mi_samples"] = fit.mutual_info.n_samples_
    _sparse_arrays(fit, data, coords, metrics)
    _cluster_arrays(fit, len(ua) + len(ub), data, coords, metrics)
    spectral = fit.spectral
    ds = xr.Dataset(data, coords, attrs={"n_samples": corr.n_samples_, "threshold": spec.threshold, "tau": spec.tau,
                                         "cluster_penalty": spec.cluster_penalty,
                                         "eigenvalues": spectral.eigenvalues_[: min(50, len(spectral.eigenvalues_))]})
    return ds, metrics


def _sparse_arrays(fit, data: dict, coords: dict, metrics: dict) -> None:
    sparse = fit.sparse
    coords["penalty"] = sparse.penalties_
    data["coef"] = (("penalty", "b", "a"), sparse.coef_)
    data["sparse_loss"] = ("penalty", sparse.loss_)
    data["sparse_weights"] = (("penalty", "b"), sparse.n_significant_)
    data["sparse_converged"] = ("penalty", sparse.converged_)  # False: sparse_iter ran out (also warned)
    for p, loss, weights, converged in zip(sparse.penalties_, sparse.loss_, sparse.n_significant_, sparse.converged_):
        metrics[f"sparse_loss@{p:.3g}"] = float(loss)
        metrics[f"sparse_weights@{p:.3g}"] = float(weights.mean())
        metrics[f"sparse_converged@{p:.3g}"] = float(converged)


def _cluster_arrays(fit, nodes: int, data: dict, coords: dict, metrics: dict) -> None:
    coords["node"] = np.arange(nodes)
    data["mapping_order"] = ("node", fit.clustering.order_)
    spectral = fit.spectral
    coords["cluster"] = np.arange(len(spectral.sizes_a_))
    data.update({"spectral_labels": ("node", spectral.labels_), "spectral_order": ("node", spectral.order_),
                 "cluster_size_a": ("cluster", spectral.sizes_a_), "cluster_size_b": ("cluster", spectral.sizes_b_),
                 "cluster_between": ("cluster", spectral.between_), "cluster_within": ("cluster", spectral.within_)})
    shared = np.isfinite(spectral.between_)
    metrics["spectral_clusters"] = len(spectral.sizes_a_)
    metrics["spectral_eigengap_k"] = spectral.suggested_k_
    metrics["spectral_shared_clusters"] = int(shared.sum())
    if shared.any():
        metrics["spectral_between_mean"] = float(spectral.between_[shared].mean())


def _row(run, epoch, layer, metric, value, condition=None, seed=None) -> dict:
    return {"run": run, "condition": condition, "seed": seed, "epoch": epoch, "layer": layer,
            "metric": metric.split("@")[0], "space": metric.split("@")[1] if "@" in metric else None,
            "value": float(value)}


def moments_cka(moments: Moments) -> dict[bool, np.ndarray]:
    """{debiased: CKA matrix} of a `Moments`' blocks, as `_cka_rows` takes them."""
    return {debiased: CKA(debiased).fit(moments).matrix_ for debiased in (False, True)}


def _cka_rows(matrices: dict[bool, np.ndarray], blocks: list[tuple[str, str]], epoch: int | None, summary: dict,
              tag: str) -> list[dict]:
    """A row per pair of blocks of both CKA matrices ({debiased: matrix}), and both into `summary`."""
    rows = []
    for debiased, matrix in matrices.items():
        summary[f"cka{'_debiased' if debiased else ''}"] = (("block", "block2"), matrix)
        for i, j in itertools.combinations_with_replacement(range(len(blocks)), 2):
            (ri, li), (rj, lj) = blocks[i], blocks[j]
            if i == j:
                continue
            run = ri if ri == rj else pair_name(ri, rj)
            layer = li if li == lj else f"{li}~{lj}"
            rows.append(_row(run, epoch, layer, f"{tag}{'_debiased' if debiased else ''}", matrix[i, j]))
    return rows


