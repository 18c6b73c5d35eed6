"""Prototype metrics: how diverse a layer's prototypes are, how fast they change, how reliably they re-evolve.

For each run, repeat, epoch, layer, space and distance:

* **diversity** — the mean distance between the prototypes of two different units of the layer;
* **change** (rate of change) — the distance between a unit's prototype at epoch e and at the
  next studied epoch, averaged over units; stored at epoch e (the last epoch has none);
* **consistency** (re-evolution) — the distance between a unit's prototypes from two repeats
  (independent seeds) at the same epoch, averaged over units and over pairs of repeats; lower
  means more consistent. Its `repeat` is empty in the table.

Before any comparison each prototype is multiplied by its receptive-field mask (the
layer's, or the unit's when stored), as in the seed; a mask that is all zero or missing
(the Gaussian fit found nothing) would make every prototype blank and every distance
zero, so that prototype is compared unmasked instead, and `masked_fraction` says how
many were. Silent units (no image excited them) are left out by default.

Distances: ``mse`` (mean squared difference per dimension) and ``cosine`` (1 - cosine
similarity; two all-zero vectors are identical, a zero vector is orthogonal to the rest).
They are tensor programs on the device: a pairwise matrix per (epoch, repeat) from one
matmul, paired distances elementwise; no Python loop runs over pairs of units.

Where results go: the averages in the tidy metrics table (stage ``analyze``, one Parquet
file per run, layer and space); the per-unit values — to find the units that change most —
in ``STORE/unit_metrics.zarr``, arrays with named dims beside the prototypes':
``<space>/<run>/<layer>/{diversity,change}_<distance>[epoch, repeat, unit]`` and
``consistency_<distance>[epoch, unit]`` (a unit's diversity value is its mean distance to
the other units). They are arrays, not table rows, because they are indexed exactly like the
prototypes (unit i is channel i) and are as many as the prototypes: at the seed's scale a
row per unit would put tens of millions of rows in a table meant for curves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ..jobs import Job
from ..store import MetricsTable

DISTANCES = ("mse", "cosine")
KINDS = ("diversity", "change", "consistency")
STAGE = "analyze"


# ---------------------------------------------------------------- masks


def usable_masks(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., S, S) masks -> (masks with each unusable one replaced by ones, which were usable (...)).

    Unusable: not finite anywhere (never written) or zero everywhere (nothing to see through)."""
    flat = masks.flatten(-2)
    ok = torch.isfinite(flat).all(-1) & (flat.nan_to_num(0).amax(-1) > 0)
    return torch.where(ok[..., None, None], masks.nan_to_num(0), torch.ones_like(masks)), ok


def masked_images(prototypes: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
    """uint8 (..., S, S, 3) prototypes -> float (..., 3, S, S) in [0, 1], times the mask when given.

    `masks` broadcasts against (..., S, S): (S, S) for one per layer, (U, S, S) for one per unit."""
    x = prototypes.movedim(-1, -3).float() / 255
    if masks is None:
        return x
    return x * usable_masks(masks.to(x.device, x.dtype))[0].unsqueeze(-3)


# ---------------------------------------------------------------- distances


def _check(distance: str) -> None:
    if distance not in DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; use one of {DISTANCES}")


def pairwise(x: torch.Tensor, distance: str) -> torch.Tensor:
    """(..., N, D) -> (..., N, N): the distance between every two rows, from one batched matmul.

    MSE as |a|^2 + |b|^2 - 2 a.b after subtracting the rows' mean (distances do not change, and the
    cancellation error of the expansion shrinks with the norms); the diagonal is exactly zero."""
    _check(distance)
    x = x.float()
    n, dims = x.shape[-2], x.shape[-1]
    if distance == "mse":
        x = x - x.mean(-2, keepdim=True)
        sq = (x * x).sum(-1)
        d = (sq[..., :, None] + sq[..., None, :] - 2 * (x @ x.transpose(-1, -2))).clamp_min(0) / dims
    else:
        norm = x.norm(dim=-1)
        zero = norm == 0
        unit = x / norm.clamp_min(torch.finfo(x.dtype).tiny)[..., None]
        sim = unit @ unit.transpose(-1, -2) + (zero[..., :, None] & zero[..., None, :])
        d = (1 - sim).clamp(0, 2)
    return d * (1 - torch.eye(n, device=x.device, dtype=d.dtype))


def paired(a: torch.Tensor, b: torch.Tensor, distance: str) -> torch.Tensor:
    """(..., D), (..., D) -> (...): the distance between corresponding rows (identical rows give 0)."""
    _check(distance)
    a, b = a.float(), b.float()
    if distance == "mse":
        return ((a - b) ** 2).mean(-1)
    na, nb = a.norm(dim=-1), b.norm(dim=-1)
    sim = (a * b).sum(-1) / (na * nb).clamp_min(torch.finfo(a.dtype).tiny)
    same = (a == b).all(-1)  # exactly 0 for identical rows (zero vectors included), not 1 - 0.9999999
    return torch.where(same, torch.zeros_like(sim), (1 - sim).clamp(0, 2))


def _nanmean(values: torch.Tensor, valid: torch.Tensor, dim: int = -1) -> torch.Tensor:
    count = valid.sum(dim)
    total = torch.where(valid, values, torch.zeros_like(values)).sum(dim)
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, float("nan")))


# ---------------------------------------------------------------- metrics


def diversity(x: torch.Tensor, distance: str, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean distance between the prototypes of two different units.

    x: (..., U, D); valid: (..., U) bool (default: all). Returns (value (...), per unit (..., U)), a unit's
    value being its mean distance to the other valid units; NaN where fewer than two units are valid.
    """
    valid = torch.ones(x.shape[:-1], dtype=torch.bool, device=x.device) if valid is None else valid.to(x.device)
    x = torch.where(valid[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))  # NaN rows stay out
    d = pairwise(x, distance)
    w = valid.to(d.dtype)
    others = w.sum(-1, keepdim=True) - w  # how many valid units besides this one
    per_unit = (d @ w[..., None])[..., 0] / others.clamp_min(1)
    per_unit = torch.where(valid & (others > 0), per_unit, torch.full_like(per_unit, float("nan")))
    return _nanmean(per_unit, per_unit.isfinite()), per_unit


def change(a: torch.Tensor, b: torch.Tensor, distance: str, valid_a: torch.Tensor | None = None,
           valid_b: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance between each unit's prototypes at two epochs. a, b: (..., U, D). Returns (mean over units, per unit)."""
    per_unit = paired(a, b, distance)
    valid = torch.ones_like(per_unit, dtype=torch.bool)
    for v in (valid_a, valid_b):
        if v is not None:
            valid = valid & v.to(per_unit.device)
    per_unit = torch.where(valid, per_unit, torch.full_like(per_unit, float("nan")))
    return _nanmean(per_unit, valid), per_unit


def consistency(x: torch.Tensor, distance: str, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance between each unit's prototypes from different repeats. x: (R, U, D), valid: (R, U).

    Every pair of repeats (r < s) at once; returns (mean over pairs of the mean over units, per unit
    (U,) averaged over pairs). NaN with fewer than two repeats."""
    R = x.shape[0]
    valid = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if valid is None else valid.to(x.device)
    r, s = torch.triu_indices(R, R, offset=1, device=x.device)
    if len(r) == 0:
        nan = torch.full((x.shape[1],), float("nan"), device=x.device)
        return nan[0], nan
    per_pair = change(x[r], x[s], distance, valid[r], valid[s])  # (P,), (P, U)
    value = _nanmean(per_pair[0], per_pair[0].isfinite(), 0)
    return value, _nanmean(per_pair[1], per_pair[1].isfinite(), 0)


# ---------------------------------------------------------------- jobs: one (run, layer), every space


def _space_key(run: str, layer: str, space: str) -> str:
    return f"{run}/{layer}/spaces/{space}"


class UnitMetrics:
    """``unit_metrics.zarr/<space>/<run>/<layer>/``: a block group (`store.blocks`) per (space, run, layer),
    one block per epoch; attrs ``settings`` record what the values depend on."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _group(self, space: str, run: str, layer: str, schema=None):
        from ..store.blocks import BlockGroup

        return BlockGroup(self.path / space / run / layer, schema, "the unit-metrics store", self.path)

    def settings(self, space: str, run: str, layer: str) -> dict | None:
        group = self._group(space, run, layer)
        return group.settings().get("settings") if group.exists() else None

    def create(self, space: str, run: str, layer: str, epochs: list[int], repeats: int, units: int,
               distances, settings: dict) -> None:
        """The group and its arrays, before any job runs; other settings are refused."""
        from ..store.blocks import Array, Schema

        E = len(epochs)
        arrays = {f"{k}_{d}": Array(("epoch", "unit") if k == "consistency" else ("epoch", "repeat", "unit"),
                                    (E, units) if k == "consistency" else (E, repeats, units), "float32",
                                    float("nan"), description=_UNIT_DESCRIPTIONS[k])
                  for k in KINDS for d in distances}
        coords = {"epoch": np.asarray(epochs, "int64"), "repeat": np.arange(repeats, dtype="int64"),
                  "unit": np.arange(units, dtype="int64")}
        self._group(space, run, layer, schema=Schema(arrays, blocks=1, coords=coords)).create({"settings": settings})

    def write(self, space: str, run: str, layer: str, arrays: dict[str, np.ndarray]) -> None:
        """Every epoch's block, each marked done after its data."""
        group = self._group(space, run, layer)
        for i in range(len(next(iter(arrays.values())))):
            group.write((i,), {name: values[i].astype(np.float32) for name, values in arrays.items()})


_UNIT_DESCRIPTIONS = {
    "diversity": "the unit's mean distance to the other units' prototypes",
    "change": "distance between the unit's prototype at this epoch and at the next studied epoch",
    "consistency": "distance between the unit's prototypes from two repeats (mean over pairs of repeats)",
}


def _covered(table: MetricsTable, units: UnitMetrics, run: str, layer: str, space: str, settings: dict,
             want: set, distances) -> bool:
    """Whether the stored results of this (run, layer, space) cover the finished prototype jobs `want`."""
    path = table.root / STAGE / f"{_space_key(run, layer, space)}.parquet"
    if not path.is_file() or units.settings(space, run, layer) != settings:
        return False
    frame = pd.read_parquet(path, columns=["epoch", "repeat", "metric"])
    for d in distances:
        rows = frame[frame["metric"] == f"diversity_{d}"]
        if set(zip(rows["epoch"].astype(int), rows["repeat"].astype(int))) != want:
            return False
    return True


def _missing_spaces(table: MetricsTable, units: "UnitMetrics", ds, run: str, layer: str, spaces: list,
                    spec) -> list:
    """The spaces whose stored results of this (run, layer) do not cover its finished prototype jobs."""
    epochs = [int(e) for e in ds["epoch"].values]
    want = {(epochs[i], int(r)) for i, r in np.argwhere(np.asarray(ds["done"].values, bool))}
    settings = {"masked": spec.masked, "exclude_silent": spec.exclude_silent}
    return [s for s in spaces if want and not _covered(table, units, run, layer, s.name,
                                                       dict(settings, space=s.settings()), want, spec.distances)]


def _layer_masks(ds, device) -> torch.Tensor | None:
    """(E, S, S) or, per unit, (E, U, S, S); NaN where an epoch has none (then unmasked)."""
    name = "rf_mask_unit" if "rf_mask_unit" in ds else "rf_mask"
    return torch.as_tensor(ds[name].values).to(device) if name in ds else None


def analyze_layer(ds, run, layer: str, spaces: list, spec, device, embeddings, table: MetricsTable,
                  units: UnitMetrics, on_epoch: Callable[[int, int], None] | None = None) -> list[str]:
    """Every metric of one run's layer in every space whose stored results miss finished jobs.

    `ds`: the layer's Dataset from the array store; `run`: the RunSpec; returns the spaces computed.
    Epochs stream one at a time (only the previous epoch's vectors are kept for the rate of change),
    so memory does not grow with the number of checkpoints.
    """
    epochs = [int(e) for e in ds["epoch"].values]
    R, U = int(ds.sizes["repeat"]), int(ds.sizes["unit"])
    done = np.asarray(ds["done"].values, bool)
    todo = _missing_spaces(table, units, ds, run.name, layer, spaces, spec)
    if not todo:
        return []
    for space in todo:  # a half-rewritten result must never look finished
        (table.root / STAGE / f"{_space_key(run.name, layer, space.name)}.parquet").unlink(missing_ok=True)

    silent = np.asarray(ds["silent"].values, bool) if spec.exclude_silent else np.zeros((len(epochs), R, U), bool)
    valid_all = torch.as_tensor(done[..., None] & ~silent)  # (epoch, repeat, unit)
    masks = _layer_masks(ds, device) if spec.masked else None
    base = {"run": run.name, "condition": run.condition, "seed": run.seed, "layer": layer}
    rows: dict[str, list[dict]] = {s.name: [] for s in todo}
    mask_rows: list[dict] = []
    nan = np.full((len(epochs), R, U), np.nan, np.float32)
    per_unit = {s.name: {f"{k}_{d}": (nan.copy() if k != "consistency" else nan[:, 0].copy())
                         for k in KINDS for d in spec.distances} for s in todo}
    stored_done = {s.name: embeddings.done(s, run.name, layer, done.shape) for s in todo if s.stored}
    previous: dict[str, tuple[int, torch.Tensor]] = {}
    for i, epoch in enumerate(epochs):
        reps = [int(r) for r in np.flatnonzero(done[i])]
        if not reps:
            previous.clear()  # the next studied epoch is missing: no rate of change across the gap
            continue
        prototypes = torch.as_tensor(np.asarray(ds["prototype"].isel(epoch=i).values)).to(device)
        mask = masks[i] if masks is not None else None
        images = masked_images(prototypes, mask)  # (R, U, 3, S, S)
        if mask is not None:
            ok = usable_masks(mask)[1].float()
            mask_rows.append(dict(base, epoch=epoch, metric="masked_fraction", value=float(ok.mean())))
        valid = valid_all[i].to(device)
        for space in todo:
            x = _vectors(space, images, reps, i, epochs, run.name, layer, embeddings, stored_done, spec.batch_size)
            out, name = per_unit[space.name], space.name
            for d in spec.distances:
                value, unit_values = diversity(x, d, valid)
                out[f"diversity_{d}"][i] = unit_values.cpu().numpy()
                rows[name] += [dict(base, epoch=epoch, repeat=r, metric=f"diversity_{d}", space=name,
                                    value=float(value[r])) for r in reps]
                if len(reps) >= 2:
                    value, unit_values = consistency(x[reps], d, valid[reps])
                    out[f"consistency_{d}"][i] = unit_values.cpu().numpy()
                    rows[name].append(dict(base, epoch=epoch, metric=f"consistency_{d}", space=name, value=float(value)))
                if name in previous:
                    j, before = previous[name]
                    value, unit_values = change(before, x, d, valid_all[j].to(device), valid)
                    out[f"change_{d}"][j] = unit_values.cpu().numpy()
                    rows[name] += [dict(base, epoch=epochs[j], repeat=r, metric=f"change_{d}", space=name,
                                        value=float(value[r])) for r in reps if done[j, r]]
            previous[name] = (i, x)
        if on_epoch:
            on_epoch(i + 1, len(epochs))
    if mask_rows:
        table.write(STAGE, f"{run.name}/{layer}/rf_masks", mask_rows)
    for space in todo:  # per-unit arrays first, the table file last: its presence means "finished"
        units.write(space.name, run.name, layer, per_unit[space.name])
        table.write(STAGE, _space_key(run.name, layer, space.name), rows[space.name])
    return [s.name for s in todo]


def _vectors(space, images: torch.Tensor, reps: list[int], index: int, epochs: list[int], run: str, layer: str,
             embeddings, stored_done: dict, batch_size: int) -> torch.Tensor:
    """(R, U, 3, S, S) masked prototypes of one epoch -> (R, U, F) vectors of `space`.

    A model space embeds only the blocks not yet stored, stores them, and reads the others back;
    rows of repeats not finished stay NaN (and are never valid)."""
    from .embeddings import embed_images

    if not space.stored:
        return space.embed(images.flatten(0, 1)).view(*images.shape[:2], -1)
    R, U = images.shape[:2]
    new = [r for r in reps if not stored_done[space.name][index, r]]
    parts: dict[int, torch.Tensor] = {}
    if new:
        out = embed_images(space, images[new].flatten(0, 1), batch_size).view(len(new), U, -1)
        embeddings.write(space, run, layer, epochs, R, index, new, out.cpu().numpy())
        stored_done[space.name][index, new] = True
        parts.update({r: out[k].to(images.device) for k, r in enumerate(new)})
    if len(parts) < len(reps):
        stored = torch.as_tensor(embeddings.read(space, run, layer, index)).to(images.device)
        parts.update({r: stored[r] for r in reps if r not in parts})
    features = next(iter(parts.values())).shape[-1]
    x = torch.full((R, U, features), float("nan"), device=images.device)
    for r, values in parts.items():
        x[r] = values
    return x


def analyze_prototypes(study, runs: list | None = None, progress=None, executor=None) -> int:
    """Prototype metrics of every stored (run, layer) of the study that misses some; returns how many
    (run, layer, space) results were computed now. Results: the metrics table (stage ``analyze``),
    ``STORE/unit_metrics.zarr`` and, for model spaces, ``STORE/embeddings.zarr``."""
    from ..jobs import execute

    names = [r if isinstance(r, str) else r.name for r in runs] if runs is not None else None
    outcome = execute(ANALYZE, study, executor, names, progress)
    return sum(s.get("spaces", 0) for s in outcome.finished.values())


class AnalyzeStage:
    """Jobs (run, layer), every space inside: a layer's epochs stream in order within one job, so the
    rate of change never needs another job's memory. Done when every space covers the finished
    prototype jobs."""

    name = "analyze"

    def plan(self, study, runs):
        from ..errors import UserError
        from ..runtime import resolve_device
        from ..store import check_settings
        from ..store.arrays import ArrayStore
        from .embeddings import make_spaces

        spec, root = study.analyze, Path(study.store)
        arrays = ArrayStore(root / "arrays.zarr")
        stored_runs = arrays.runs()
        if not stored_runs:
            raise UserError(f"No prototypes in {root / 'arrays.zarr'}: run `protoscope evolve` first.")
        make_spaces(study, resolve_device(study.device))  # a wrong space is reported before settings are recorded
        check_settings(root, STAGE, {"masked": spec.masked, "exclude_silent": spec.exclude_silent})
        selected = [study.run(n) for n in runs] if runs is not None else study.runs
        return [Job(ANALYZE_REF, (run.name, layer), run.name) for run in selected if run.name in stored_runs
                for layer in study.layers if arrays.has_layer(run.name, layer)]

    def prepare(self, study, jobs) -> None:
        """A space redefined under a stored name is refused before any work."""
        from ..store.arrays import ArrayStore
        from .embeddings import EmbeddingStore, make_spaces

        from ..errors import UserError

        spec, root = study.analyze, Path(study.store)
        embeddings = EmbeddingStore(root / "embeddings.zarr", spec.masked)
        arrays, units = ArrayStore(root / "arrays.zarr"), UnitMetrics(root / "unit_metrics.zarr")
        spaces = make_spaces(study)
        for job in jobs:
            stored = arrays.settings(*job.key)
            if spec.masked and stored.get("synth_rf") == "none":
                raise UserError(f"The prototypes of {job} have no receptive-field masks (synth.rf: none); "
                                "set analyze.masked: false, or evolve them with synth.rf: layer.")
            for space in [s for s in spaces if s.stored]:
                embeddings.check(space, *job.key, stored["epochs"])
        for job in jobs:  # every check passed: now the per-unit arrays
            stored = arrays.settings(*job.key)
            for space in spaces:
                units.create(space.name, *job.key, stored["epochs"], stored["n_repeats"], stored["n_units"],
                             spec.distances, {"masked": spec.masked, "exclude_silent": spec.exclude_silent,
                                              "space": space.settings()})

    def is_done(self, study, job) -> bool:
        return not self._todo(study, job, None)[1]

    def _todo(self, study, job, device):
        """(the layer's Dataset, spaces whose stored results miss finished prototype jobs, all spaces)."""
        import xarray as xr

        from .embeddings import make_spaces

        run, layer = job.key
        spec = study.analyze
        ds = xr.open_dataset(Path(study.store) / "arrays.zarr" / "runs" / run / layer, engine="zarr",
                             consolidated=False, zarr_format=3)  # lazy, like open_store's
        spaces = make_spaces(study, device or "cpu")
        root = Path(study.store)
        todo = _missing_spaces(MetricsTable(root), UnitMetrics(root / "unit_metrics.zarr"), ds, run, layer, spaces, spec)
        return ds, todo, spaces

    def run(self, study, job, device, emit) -> dict:
        from .embeddings import EmbeddingStore

        root, spec = Path(study.store), study.analyze
        ds, _, spaces = self._todo(study, job, device)
        embeddings = EmbeddingStore(root / "embeddings.zarr", spec.masked)
        names = analyze_layer(ds, study.run(job.key[0]), job.key[1], spaces, spec, device, embeddings,
                              MetricsTable(root), UnitMetrics(root / "unit_metrics.zarr"),
                              on_epoch=lambda i, n: emit(f"epoch {i}/{n}"))
        emit(": ".join([str(job), ", ".join(names)]))
        return {"spaces": len(names)}


ANALYZE = AnalyzeStage()
ANALYZE_REF = f"{__name__}:ANALYZE"


def unit_values(study, space: str, run: str, layer: str, metric: str):
    """A per-unit array as an xarray DataArray (e.g. metric="change_mse"), or None when not computed."""
    import xarray as xr

    where = Path(study.store) / "unit_metrics.zarr" / space / run / layer
    if not (where / "zarr.json").is_file():
        return None
    ds = xr.open_zarr(where, consolidated=False, zarr_format=3)
    return ds[metric] if metric in ds else None
