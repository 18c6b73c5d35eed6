"""The align stage: one pass of the stimulus set through the checkpoints, every alignment from its moments.

Two kinds of job, each a single stream over the stimulus images (nothing but moments and a fixed-size
sample is kept):

- **pairs at epoch e**: every run that has checkpoint e goes through the net together. Per
  requested pair and layer: the per-position moments of both nets (correlation, matching, sparse
  prediction, clustering) and a sample of rows (mutual information); for every run and layer: the
  pooled moments (CKA between every (run, layer), sorted mean-activation curves).
- **track run r**: every epoch of r goes through together. Per layer: the moments of (epoch e,
  final epoch) for each e (identity tracking); the pooled moments of every (epoch, layer) (CKA
  over training).

A job writes its arrays (`store.alignment`, netCDF with named dimensions) and then its metrics
(``metrics/align/<job>.parquet``), which mark it done: a rerun skips finished jobs.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
import xarray as xr

from ..analyze.activations import stimulus_set, stream_activations
from ..analyze.align.cka import cka_matrix
from ..analyze.align.correlation import Correlation
from ..analyze.align.pair import accumulate, check_memory
from ..analyze.align.passes import _cka_rows, _row, analyze_pair, moments_cka, pair_name
from ..analyze.align.stats import Moments, accumulation_device, pool
from ..analyze.align.track import IdentityTracking
from ..errors import UserError, did_you_mean
from ..nets.checkpoints import load_into
from ..nets.layers import check_layers
from ..synth.layer import layer_units
from ..store import MetricsTable, layout
from ..store.alignment import write_result
from ..store.arrays import ArrayStore
from .base import StudyStage, build, checkpoints


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


def pair_epochs(study, pairs) -> dict[int, list[tuple[str, str]]]:
    """{epoch: pairs aligned there}: `align.epochs`, or each pair's last common checkpoint."""
    out: dict[int, list[tuple[str, str]]] = {}
    for a, b in pairs:
        common = sorted(set(checkpoints(study, study.run(a))) & set(checkpoints(study, study.run(b))))
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
    return {"align": spec.model_dump(mode="json", exclude={"memory_gb"}),  # it changes no result
            "probe": {"data": (study.rsa.data or study.runs[0].data).model_dump(mode="json"),
                      "images": spec.images or study.rsa.images},
            "layers": spec.layers or study.layers}


def _sides(study, sides: list[tuple[str, int]], layers: list[str]):
    models = []
    for name, epoch in sides:
        run = study.run(name)
        model = build(run)
        check_layers(model, layers)
        load_into(model, checkpoints(study, run)[epoch])
        models.append(model)
    return models


def _images(study):
    stimuli = stimulus_set(study)
    n = study.align.images
    return stimuli.images[:n] if n else stimuli.images


def _prototypes(study, a: str, b: str, layer: str, epoch: int):
    """(protos_a, protos_b, rf_mask or None) at repeat 0 when both are stored, else None."""
    path = layout.arrays(study)
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


def pairs_job(study, epoch: int, pairs: list[tuple[str, str]], layers: list[str], images, device) -> list[dict]:
    """Align every pair at one epoch (and CKA among every run that has that epoch)."""
    spec = study.align
    runs = [r.name for r in study.runs if epoch in checkpoints(study, r)]
    models = _sides(study, [(name, epoch) for name in runs], layers)
    index = {name: k for k, name in enumerate(runs)}
    streamed = accumulate(models, layers, [(index[a], index[b]) for a, b in pairs], images, device=device,
                          batch_size=spec.batch_size, mi_samples=spec.mi_samples, seed=epoch,
                          names=[f"{r}/{l}" for r in runs for l in layers])
    pooled = streamed.pooled
    rows: list[dict] = []
    root = layout.alignment(study) / f"epoch_{epoch:03d}"
    for (a, b), layer in itertools.product(pairs, layers):
        key = ((index[a], index[b]), layer)
        ds, metrics = analyze_pair(streamed.pairs[key], streamed.samples.get(key), spec,
                                   _prototypes(study, a, b, layer, epoch))
        ds.attrs.update(run_a=a, run_b=b, epoch=epoch, layer=layer)
        write_result(ds, root / pair_name(a, b) / f"{layer}.nc")
        ra, rb = study.run(a), study.run(b)
        condition = ra.condition if ra.condition == rb.condition else f"{ra.condition}~{rb.condition}"
        rows += [_row(pair_name(a, b), epoch, layer, k, v, condition) for k, v in metrics.items()]
    blocks = [(r, l) for r in runs for l in layers]
    summary: dict = {}
    rows += _cka_rows(moments_cka(pooled), blocks, epoch, summary, "cka")
    for k, (r, l) in enumerate(blocks):
        summary[f"mean_{k}"] = (f"unit_{k}", pooled.mean(k))
    write_result(xr.Dataset(summary, attrs={"epoch": epoch, "runs": runs, "layers": layers,
                                      "blocks": [f"{r}/{l}" for r, l in blocks]}), root / "summary.nc")
    return rows


def track_job(study, name: str, layers: list[str], images, device) -> list[dict]:
    """Every epoch of one run against its final epoch: identity tracking and CKA over training."""
    spec = study.align
    run = study.run(name)
    epochs = sorted(checkpoints(study, run))
    final = epochs[-1]
    corrs, pooled = _track_statistics(study, name, epochs, layers, images, device)
    rows: list[dict] = []
    row = dict(condition=run.condition, seed=run.seed)
    root = layout.alignment(study) / "track" / name
    for layer in layers:
        track = IdentityTracking(spec.threshold).fit({e: corrs[e, layer] for e in epochs})
        ds = xr.Dataset({"self_corr": (("epoch", "unit"), track.self_corr_), "alive": (("epoch", "unit"), track.alive_),
                         "identity_epoch": ("unit", track.identity_epoch_),
                         "mean_self_corr": ("epoch", track.mean_self_corr_),
                         "matched_mean": ("epoch", track.matched_mean_), "self_matched": ("epoch", track.self_matched_)},
                        {"epoch": epochs, "unit": np.arange(track.self_corr_.shape[1])},
                        attrs={"run": name, "layer": layer, "final_epoch": final, "threshold": spec.threshold})
        write_result(ds, root / f"{layer}.nc")
        for k, e in enumerate(epochs):
            identified = float(np.mean((track.identity_epoch_ >= 0) & (track.identity_epoch_ <= e)))
            for metric, value in (("track_self_corr", track.mean_self_corr_[k]), ("track_matched_corr", track.matched_mean_[k]),
                                  ("track_self_matched", track.self_matched_[k]), ("track_identified", identified)):
                rows.append(_row(name, e, layer, metric, value, **row))
    blocks = [(str(e), l) for e in epochs for l in layers]
    summary: dict = {}
    matrices = {debiased: cka_matrix([pooled[e, l] for e in epochs for l in layers], debiased)
                for debiased in (False, True)}
    cka_rows = _cka_rows(matrices, blocks, None, summary, "track_cka")
    # keep the rows that compare an epoch with the final epoch at the same layer (the matrix has the rest)
    for r in cka_rows:
        if "~" in r["run"] and r["layer"] and "~" not in r["layer"] and r["run"].endswith(f"~{final}"):
            rows.append(dict(r, run=name, epoch=int(r["run"].split("~")[0]), **row))
    write_result(xr.Dataset(summary, attrs={"run": name, "epochs": epochs, "layers": layers,
                                      "blocks": [f"{e}/{l}" for e, l in blocks]}), root / "cka.nc")
    return rows


def _track_statistics(study, name: str, epochs: list[int], layers: list[str], images, device):
    """Per (epoch, layer): the correlations of its units with the final epoch's, and its activations
    pooled over space (images, units), for CKA.

    One checkpoint in memory at a time, against the final epoch's activations kept from a first pass
    (images × units × positions per layer, however many epochs): memory grows with the epochs only by
    what the results themselves hold (bench/scale_soak.py measures it)."""
    spec, acc = study.align, accumulation_device(device)

    def batches(epoch: int):
        model = _sides(study, [(name, epoch)], layers)[0]
        return stream_activations(model, layers, images, device=device, batch_size=spec.batch_size, pool=False)

    final = [{layer: a.cpu() for layer, a in out.items()} for out in batches(epochs[-1])]
    corrs, pooled = {}, {}
    for epoch in epochs:
        moments = {layer: Moments(acc, higher=False) for layer in layers}
        kept: dict[str, list] = {layer: [] for layer in layers}
        for out, last in zip(final if epoch == epochs[-1] else batches(epoch), final):
            for layer in layers:
                moments[layer].partial_fit(out[layer], last[layer])
                kept[layer].append(pool(out[layer]).to("cpu", torch.float64))
        for layer in layers:
            corrs[epoch, layer] = Correlation().fit(moments[layer])
            pooled[epoch, layer] = torch.cat(kept[layer])
    return corrs, pooled


def _key(job) -> str:
    return f"pairs/epoch_{job.key[1]:03d}" if job.key[0] == "pairs" else f"track/{job.key[1]}"


class AlignStage(StudyStage):
    """Jobs ("pairs", epoch, pairs, layers) and ("track", run, layers): one stream of the stimulus set each.

    A job writes its arrays, then its metrics file, which marks it done."""

    name = "align"

    def settings(self, study) -> dict:
        return settings(study)

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
        model = build(first)
        layers = tuple(check_layers(model, study.align.layers or study.layers))
        size = (study.rsa.data or study.runs[0].data).image_size
        for layer, units in layer_units(model.eval(), list(layers), size).items():  # refused now, not mid-stage
            check_memory(units, units, study.align, f"at layer {layer!r}")
        jobs = [self.job(("pairs", e, tuple(ps), layers)) for e, ps in pair_epochs(study, pairs).items()]
        jobs += [self.job(("track", name, layers)) for name in tracks]
        self.check_settings(study)
        return jobs

    def is_done(self, study, job) -> bool:
        return MetricsTable(study.store).has("align", _key(job))

    def run(self, study, job, device, emit) -> dict:
        images = _images(study)
        self.record_settings(study)
        emit(_key(job))
        if job.key[0] == "pairs":
            rows = pairs_job(study, job.key[1], list(job.key[2]), list(job.key[3]), images, device)
        else:
            rows = track_job(study, job.key[1], list(job.key[2]), images, device)
        MetricsTable(study.store).write("align", _key(job), rows)
        return {}


STAGE = AlignStage()
