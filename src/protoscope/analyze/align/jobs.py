"""The `align` stage: one pass of the probe set through the checkpoints, every alignment from its moments.

Two kinds of job, each a single stream over the probe images (nothing but
moments and a fixed-size sample is kept):

- **pairs at epoch e** — every run that has checkpoint e goes through the net
  together. Per requested pair and layer: the per-position moments of both nets
  (correlation, matching, sparse prediction, clustering) and a sample of rows
  (mutual information); for every run and layer: the pooled moments (CKA
  between every (run, layer), sorted mean-activation curves).
- **track run r** — every epoch of r goes through together. Per layer: the
  moments of (epoch e, final epoch) for each e (identity tracking); the pooled
  moments of every (epoch, layer) (CKA over training).

A job writes its arrays (`STORE/align/...nc`, netCDF with named dimensions)
and then its metrics (`metrics/align/<job>.parquet`), which mark it done: a
rerun skips finished jobs.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import xarray as xr

from ...atomic import atomic_path
from ...errors import UserError, did_you_mean
from ...jobs import Job
from ...nets.checkpoints import epoch_files, load_into
from ...nets.layers import check_layers
from ...nets.models import build_model
from ...store import MetricsTable, check_settings
from ..activations import probe_set
from .cka import CKA
from .correlation import Correlation
from .pair import accumulate, fit_pair, stream
from .stats import Moments, accumulation_device, pool
from .track import IdentityTracking, prototype_similarity

STAGE = "align"


# --------------------------------------------------------------------------- the plan


def pair_name(a: str, b: str) -> str:
    return f"{a}~{b}"


def align_pairs(study) -> list[tuple[str, str]]:
    """The study's pairs: `align.pairs`, or every pair of runs with the same condition."""
    names = [r.name for r in study.runs]
    if study.align.pairs is None:
        return [(a.name, b.name) for a, b in itertools.combinations(study.runs, 2) if a.condition == b.condition]
    for pair in study.align.pairs:
        for name in pair:
            if name not in names:
                raise UserError(f"align.pairs: no run named {name!r}.{did_you_mean(name, names)}")
        if pair[0] == pair[1]:
            raise UserError(f"align.pairs: {list(pair)} pairs a run with itself; use align.track for epochs of one run")
    return [tuple(p) for p in study.align.pairs]


def track_runs(study, pairs) -> list[str]:
    names = [r.name for r in study.runs]
    if study.align.track is None:
        return list(dict.fromkeys(n for pair in pairs for n in pair))
    for name in study.align.track:
        if name not in names:
            raise UserError(f"align.track: no run named {name!r}.{did_you_mean(name, names)}")
    return list(study.align.track)


def _files(study, run) -> dict[int, Path]:
    files = epoch_files(study.run_dir(run))
    if not files:
        raise UserError(f"Run {run.name!r} has no checkpoints in {study.run_dir(run)}; train it first (protoscope train).")
    return files


def pair_epochs(study, pairs) -> dict[int, list[tuple[str, str]]]:
    """{epoch: pairs aligned there}: `align.epochs`, or each pair's last common checkpoint."""
    out: dict[int, list[tuple[str, str]]] = {}
    for a, b in pairs:
        common = sorted(set(_files(study, study.run(a))) & set(_files(study, study.run(b))))
        if not common:
            raise UserError(f"align: runs {a!r} and {b!r} have no checkpoint epoch in common.")
        wanted = study.align.epochs if study.align.epochs is not None else [common[-1]]
        missing = [e for e in wanted if e not in common]
        if missing:
            raise UserError(f"align.epochs: {missing} not stored for both {a!r} and {b!r} (common: {common}).")
        for e in wanted:
            out.setdefault(int(e), []).append((a, b))
    return dict(sorted(out.items()))


def settings(study) -> dict:
    """What determines the stage's results (checked against what is stored)."""
    spec = study.align
    return {"align": spec.model_dump(mode="json"),
            "probe": {"data": (study.rsa.data or study.runs[0].data).model_dump(mode="json"),
                      "images": spec.images or study.rsa.images},
            "layers": spec.layers or study.layers}


def align_root(study) -> Path:
    return Path(study.store) / STAGE


# --------------------------------------------------------------------------- streaming


def _sides(study, sides: list[tuple[str, int]], layers: list[str]):
    models = []
    for name, epoch in sides:
        run = study.run(name)
        model = build_model(run.arch, run.width, run.small_input)
        check_layers(model, layers)
        load_into(model, _files(study, run)[epoch])
        models.append(model)
    return models


def _images(study):
    probe = probe_set(study)
    n = study.align.images
    return probe.images[:n] if n else probe.images


# --------------------------------------------------------------------------- one pair, one layer


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


# --------------------------------------------------------------------------- jobs


def _prototypes(study, a: str, b: str, layer: str, epoch: int):
    """(protos_a, protos_b, rf_mask or None) at repeat 0 when both are stored, else None."""
    from ...store.arrays import ArrayStore

    path = Path(study.store) / "arrays.zarr"
    if not path.is_dir():
        return None
    store = ArrayStore(path)
    try:
        if not all(store.has_layer(r, layer) and (epoch, 0) in store.done_jobs(r, layer) for r in (a, b)):
            return None
        mask = store.read_rf(a, layer, epoch)["rf_mask"] if epoch in store.done_rf(a, layer) else None
        return store.read_job(a, layer, epoch, 0)["prototype"], store.read_job(b, layer, epoch, 0)["prototype"], mask
    except UserError:
        return None


def _write(ds: xr.Dataset, path: Path) -> None:
    """netCDF (named dims), written atomically; netCDF-3 has no int64/bool: stored as int32/int8."""
    cast = ds.copy()
    for name, var in list(cast.variables.items()):
        if var.dtype == np.int64:
            cast[name] = var.astype(np.int32)
        elif var.dtype == bool:
            cast[name] = var.astype(np.int8)
    cast.attrs = {k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in cast.attrs.items()}
    with atomic_path(path) as tmp:
        cast.to_netcdf(tmp, engine="scipy")


def read_result(path: Path) -> xr.Dataset:
    """One stored alignment result (a pair × layer, a track × layer, or a CKA summary)."""
    with xr.open_dataset(path, engine="scipy") as ds:
        return ds.load()


def _row(run, epoch, layer, metric, value, condition=None, seed=None) -> dict:
    return {"run": run, "condition": condition, "seed": seed, "epoch": epoch, "layer": layer,
            "metric": metric.split("@")[0], "space": metric.split("@")[1] if "@" in metric else None,
            "value": float(value)}


def _cka_rows(moments: Moments, blocks: list[tuple[str, str]], epoch: int | None, summary: dict, tag: str) -> list[dict]:
    rows = []
    for debiased in (False, True):
        matrix = CKA(debiased).fit(moments).matrix_
        summary[f"cka{'_debiased' if debiased else ''}"] = (("block", "block2"), matrix)
        for i, j in itertools.combinations_with_replacement(range(len(blocks)), 2):
            (ri, li), (rj, lj) = blocks[i], blocks[j]
            if i == j:
                continue
            run = ri if ri == rj else pair_name(ri, rj)
            layer = li if li == lj else f"{li}~{lj}"
            rows.append(_row(run, epoch, layer, f"{tag}{'_debiased' if debiased else ''}", matrix[i, j]))
    return rows


def pairs_job(study, epoch: int, pairs: list[tuple[str, str]], layers: list[str], images, device) -> list[dict]:
    """Align every pair at one epoch (and CKA among every run that has that epoch)."""
    spec = study.align
    runs = [r.name for r in study.runs if epoch in _files(study, r)]
    models = _sides(study, [(name, epoch) for name in runs], layers)
    index = {name: k for k, name in enumerate(runs)}
    streamed = accumulate(models, layers, [(index[a], index[b]) for a, b in pairs], images, device=device,
                          batch_size=spec.batch_size, mi_samples=spec.mi_samples, seed=epoch,
                          names=[f"{r}/{l}" for r in runs for l in layers])
    pooled = streamed.pooled
    rows: list[dict] = []
    root = align_root(study) / f"epoch_{epoch:03d}"
    for (a, b), layer in itertools.product(pairs, layers):
        key = ((index[a], index[b]), layer)
        ds, metrics = analyze_pair(streamed.pairs[key], streamed.samples.get(key), spec,
                                   _prototypes(study, a, b, layer, epoch))
        ds.attrs.update(run_a=a, run_b=b, epoch=epoch, layer=layer)
        _write(ds, root / pair_name(a, b) / f"{layer}.nc")
        ra, rb = study.run(a), study.run(b)
        condition = ra.condition if ra.condition == rb.condition else f"{ra.condition}~{rb.condition}"
        rows += [_row(pair_name(a, b), epoch, layer, k, v, condition) for k, v in metrics.items()]
    blocks = [(r, l) for r in runs for l in layers]
    summary: dict = {}
    rows += _cka_rows(pooled, blocks, epoch, summary, "cka")
    for k, (r, l) in enumerate(blocks):
        summary[f"mean_{k}"] = (f"unit_{k}", pooled.mean(k))
    _write(xr.Dataset(summary, attrs={"epoch": epoch, "runs": runs, "layers": layers,
                                      "blocks": [f"{r}/{l}" for r, l in blocks]}), root / "summary.nc")
    return rows


def track_job(study, name: str, layers: list[str], images, device) -> list[dict]:
    """Every epoch of one run against its final epoch: identity tracking and CKA over training."""
    spec = study.align
    run = study.run(name)
    epochs = sorted(_files(study, run))
    final = epochs[-1]
    models = _sides(study, [(name, e) for e in epochs], layers)
    acc = accumulation_device(device)
    moments = {(e, l): Moments(acc, higher=False) for e in epochs for l in layers}
    pooled = Moments(acc, names=[f"{e}/{l}" for e in epochs for l in layers])
    for outs in stream(models, layers, images, device, spec.batch_size):
        pooled.partial_fit(*[pool(outs[k][l]) for k in range(len(epochs)) for l in layers])
        for (k, e), layer in itertools.product(enumerate(epochs), layers):
            moments[e, layer].partial_fit(outs[k][layer], outs[-1][layer])
    rows: list[dict] = []
    row = dict(condition=run.condition, seed=run.seed)
    root = align_root(study) / "track" / name
    for layer in layers:
        corrs = {e: Correlation().fit(moments[e, layer]) for e in epochs}
        track = IdentityTracking(spec.threshold).fit(corrs)
        ds = xr.Dataset({"self_corr": (("epoch", "unit"), track.self_corr_), "alive": (("epoch", "unit"), track.alive_),
                         "identity_epoch": ("unit", track.identity_epoch_),
                         "mean_self_corr": ("epoch", track.mean_self_corr_),
                         "matched_mean": ("epoch", track.matched_mean_), "self_matched": ("epoch", track.self_matched_)},
                        {"epoch": epochs, "unit": np.arange(track.self_corr_.shape[1])},
                        attrs={"run": name, "layer": layer, "final_epoch": final, "threshold": spec.threshold})
        _write(ds, root / f"{layer}.nc")
        for k, e in enumerate(epochs):
            identified = float(np.mean((track.identity_epoch_ >= 0) & (track.identity_epoch_ <= e)))
            for metric, value in (("track_self_corr", track.mean_self_corr_[k]), ("track_matched_corr", track.matched_mean_[k]),
                                  ("track_self_matched", track.self_matched_[k]), ("track_identified", identified)):
                rows.append(_row(name, e, layer, metric, value, **row))
    blocks = [(str(e), l) for e in epochs for l in layers]
    summary: dict = {}
    cka_rows = _cka_rows(pooled, blocks, None, summary, "track_cka")
    # keep the rows that compare an epoch with the final epoch at the same layer (the matrix has the rest)
    for r in cka_rows:
        if "~" in r["run"] and r["layer"] and "~" not in r["layer"] and r["run"].endswith(f"~{final}"):
            rows.append(dict(r, run=name, epoch=int(r["run"].split("~")[0]), **row))
    _write(xr.Dataset(summary, attrs={"run": name, "epochs": epochs, "layers": layers,
                                      "blocks": [f"{e}/{l}" for e, l in blocks]}), root / "cka.nc")
    return rows


def align_study(study, runs: list[str] | None = None, progress=None, executor=None) -> int:
    """Run every align job not yet stored (restricted to pairs/tracks touching `runs`); returns jobs done now."""
    from ...jobs import execute

    return execute(ALIGN, study, executor, runs, progress).done_now


def _key(job) -> str:
    return f"pairs/epoch_{job.key[1]:03d}" if job.key[0] == "pairs" else f"track/{job.key[1]}"


class AlignStage:
    """Jobs ("pairs", epoch, pairs, layers) and ("track", run, layers): one stream of the probe set each.

    A job writes its arrays, then its metrics file, which marks it done."""

    name = "align"

    def plan(self, study, runs):
        pairs = align_pairs(study)
        tracks = track_runs(study, pairs)
        if runs:
            for name in runs:
                study.run(name)
            pairs = [p for p in pairs if set(p) & set(runs)]
            tracks = [t for t in tracks if t in runs]
        if not pairs and not tracks:
            return []
        # layers and epochs before settings: a typo is reported as itself, and records nothing
        first = study.run(pairs[0][0] if pairs else tracks[0])
        layers = tuple(check_layers(build_model(first.arch, first.width, first.small_input),
                                    study.align.layers or study.layers))
        jobs = [Job(ALIGN_REF, ("pairs", e, tuple(ps), layers)) for e, ps in pair_epochs(study, pairs).items()]
        jobs += [Job(ALIGN_REF, ("track", name, layers)) for name in tracks]
        check_settings(study.store, STAGE, settings(study), record=False)
        return jobs

    def prepare(self, study, jobs) -> None:
        pass  # settings are recorded with the first result

    def is_done(self, study, job) -> bool:
        return MetricsTable(study.store).has(STAGE, _key(job))

    def run(self, study, job, device, emit) -> dict:
        images = _images(study)
        check_settings(study.store, STAGE, settings(study))  # recorded before the first result
        emit(_key(job))
        if job.key[0] == "pairs":
            rows = pairs_job(study, job.key[1], list(job.key[2]), list(job.key[3]), images, device)
        else:
            rows = track_job(study, job.key[1], list(job.key[2]), images, device)
        MetricsTable(study.store).write(STAGE, _key(job), rows)
        return {}


ALIGN = AlignStage()
ALIGN_REF = f"{__name__}:ALIGN"
