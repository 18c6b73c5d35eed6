"""The analyze stage: prototype metrics (`analyze.prototype_metrics`) of every stored (run, layer).

One job per (run, layer), every space inside: a layer's epochs stream in order within one job, so
the rate of change never needs another job's memory, and memory does not grow with the number of
checkpoints. A job is done when every space covers the finished prototype jobs. Results: the
metrics table (stage ``analyze``), `store.unit_metrics` and, for model spaces, `store.embeddings`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..analyze.prototype_metrics import change, consistency, diversity, masked_images, usable_masks
from ..errors import UserError
from ..store import MetricsTable, layout
from ..store.arrays import ArrayStore
from ..store.embeddings import EmbeddingStore
from ..store.unit_metrics import KINDS, UnitMetrics
from .base import StudyStage


def _space_key(run: str, layer: str, space: str) -> str:
    return f"{run}/{layer}/spaces/{space}"


def _spaces(study, device="cpu") -> list:
    from ..analyze.embeddings import make_spaces

    return make_spaces(study, device)


class AnalyzeStage(StudyStage):
    name = "analyze"

    def settings(self, study) -> dict:
        return {"masked": study.analyze.masked, "exclude_silent": study.analyze.exclude_silent}

    def plan(self, study, runs):
        from ..runtime import resolve_device

        arrays = ArrayStore(layout.arrays(study))
        stored_runs = arrays.runs()
        if not stored_runs:
            raise UserError(f"No prototypes in {arrays.path}: run `protoscope evolve` first.")
        _spaces(study, resolve_device(study.device))  # a wrong space is reported before settings are compared
        self.check_settings(study)
        return [self.job((run.name, layer), run.name) for run in self.runs(study, runs) if run.name in stored_runs
                for layer in study.layers if arrays.has_layer(run.name, layer)]

    def prepare(self, study, jobs) -> None:
        """Masks without receptive fields, or a space redefined under a stored name, are refused
        before any work; then the per-unit arrays are created."""
        spec = study.analyze
        embeddings = EmbeddingStore(layout.embeddings(study), spec.masked)
        arrays, units = ArrayStore(layout.arrays(study)), UnitMetrics(layout.unit_metrics(study))
        spaces = _spaces(study)
        for job in jobs:
            stored = arrays.settings(*job.key)
            if spec.masked and stored.get("synth_rf") == "none":
                raise UserError(f"The prototypes of {job} have no receptive-field masks (synth.rf: none); "
                                "set analyze.masked: false, or evolve them with synth.rf: layer.")
            for space in [s for s in spaces if s.stored]:
                embeddings.check(space, *job.key, stored["epochs"])
        for job in jobs:
            stored = arrays.settings(*job.key)
            for space in spaces:
                units.create(space.name, *job.key, stored["epochs"], stored["n_repeats"], stored["n_units"],
                             spec.distances, dict(self.settings(study), space=space.settings()))

    def is_done(self, study, job) -> bool:
        return not self._todo(study, job, None)[1]

    def _todo(self, study, job, device):
        """(the layer's Dataset, spaces whose stored results miss finished prototype jobs)."""
        import xarray as xr

        run, layer = job.key
        ds = xr.open_dataset(layout.arrays(study) / "runs" / run / layer, engine="zarr",
                             consolidated=False, zarr_format=3)  # lazy, like open_store's
        spaces = _spaces(study, device or "cpu")
        todo = _missing_spaces(MetricsTable(study.store), UnitMetrics(layout.unit_metrics(study)), ds, run, layer,
                               spaces, study.analyze, self.settings(study))
        return ds, todo

    def run(self, study, job, device, emit) -> dict:
        ds, todo = self._todo(study, job, device)
        if not todo:
            return {"spaces": 0}
        self.record_settings(study)
        layer = _LayerMetrics(ds, study.run(job.key[0]), job.key[1], todo, study.analyze, device,
                              EmbeddingStore(layout.embeddings(study), study.analyze.masked))
        layer.compute(on_epoch=lambda i, n: emit(f"epoch {i}/{n}"))
        layer.write(MetricsTable(study.store), UnitMetrics(layout.unit_metrics(study)))
        names = [s.name for s in todo]
        emit(": ".join([str(job), ", ".join(names)]))
        return {"spaces": len(names)}


def _covered(table: MetricsTable, units: UnitMetrics, run: str, layer: str, space: str, settings: dict,
             want: set, distances) -> bool:
    """Whether the stored results of this (run, layer, space) cover the finished prototype jobs `want`."""
    path = table.root / "analyze" / f"{_space_key(run, layer, space)}.parquet"
    if not path.is_file() or units.settings(space, run, layer) != settings:
        return False
    frame = pd.read_parquet(path, columns=["epoch", "repeat", "metric"])
    for d in distances:
        rows = frame[frame["metric"] == f"diversity_{d}"]
        if set(zip(rows["epoch"].astype(int), rows["repeat"].astype(int))) != want:
            return False
    return True


def _missing_spaces(table, units, ds, run: str, layer: str, spaces: list, spec, settings: dict) -> list:
    """The spaces whose stored results of this (run, layer) do not cover its finished prototype jobs."""
    epochs = [int(e) for e in ds["epoch"].values]
    want = {(epochs[i], int(r)) for i, r in np.argwhere(np.asarray(ds["done"].values, bool))}
    return [s for s in spaces if want and not _covered(table, units, run, layer, s.name,
                                                       dict(settings, space=s.settings()), want, spec.distances)]


class _LayerMetrics:
    """Every metric of one run's layer in the spaces to do, streamed epoch by epoch.

    Only the previous epoch's vectors are kept (for the rate of change). `ds` is the layer's
    Dataset from the array store, `run` the RunSpec.
    """

    def __init__(self, ds, run, layer: str, spaces: list, spec, device, embeddings: EmbeddingStore):
        self.ds, self.run, self.layer, self.spaces, self.spec, self.device = ds, run, layer, spaces, spec, device
        self.embeddings = embeddings
        self.epochs = [int(e) for e in ds["epoch"].values]
        E, R, U = len(self.epochs), int(ds.sizes["repeat"]), int(ds.sizes["unit"])
        self.done = np.asarray(ds["done"].values, bool)
        silent = np.asarray(ds["silent"].values, bool) if spec.exclude_silent else np.zeros((E, R, U), bool)
        self.valid = torch.as_tensor(self.done[..., None] & ~silent)  # (epoch, repeat, unit)
        self.base = {"run": run.name, "condition": run.condition, "seed": run.seed, "layer": layer}
        self.rows: dict[str, list[dict]] = {s.name: [] for s in spaces}
        self.mask_rows: list[dict] = []
        nan = np.full((E, R, U), np.nan, np.float32)
        self.per_unit = {s.name: {f"{k}_{d}": (nan.copy() if k != "consistency" else nan[:, 0].copy())
                                  for k in KINDS for d in spec.distances} for s in spaces}
        self.stored_done = {s.name: embeddings.done(s, run.name, layer, self.done.shape) for s in spaces if s.stored}
        self.previous: dict[str, tuple[int, torch.Tensor]] = {}

    def compute(self, on_epoch=None) -> None:
        masks = _layer_masks(self.ds, self.device) if self.spec.masked else None
        for i, epoch in enumerate(self.epochs):
            reps = [int(r) for r in np.flatnonzero(self.done[i])]
            if not reps:
                self.previous.clear()  # the next studied epoch is missing: no rate of change across the gap
                continue
            prototypes = torch.as_tensor(np.asarray(self.ds["prototype"].isel(epoch=i).values)).to(self.device)
            mask = masks[i] if masks is not None else None
            images = masked_images(prototypes, mask)  # (R, U, 3, S, S)
            if mask is not None:
                ok = usable_masks(mask)[1].float()
                self.mask_rows.append(dict(self.base, epoch=epoch, metric="masked_fraction", value=float(ok.mean())))
            for space in self.spaces:
                x = _vectors(space, images, reps, i, self.epochs, self.run.name, self.layer, self.embeddings,
                             self.stored_done, self.spec.batch_size)
                self._space_epoch(space.name, x, i, reps)
            if on_epoch:
                on_epoch(i + 1, len(self.epochs))

    def _space_epoch(self, name: str, x: torch.Tensor, i: int, reps: list[int]) -> None:
        """One space at one epoch: diversity, consistency, and the change since the previous epoch."""
        out, rows, epoch = self.per_unit[name], self.rows[name], self.epochs[i]
        valid = self.valid[i].to(self.device)
        for d in self.spec.distances:
            value, unit_values = diversity(x, d, valid)
            out[f"diversity_{d}"][i] = unit_values.cpu().numpy()
            rows += [dict(self.base, epoch=epoch, repeat=r, metric=f"diversity_{d}", space=name,
                          value=float(value[r])) for r in reps]
            if len(reps) >= 2:
                value, unit_values = consistency(x[reps], d, valid[reps])
                out[f"consistency_{d}"][i] = unit_values.cpu().numpy()
                rows.append(dict(self.base, epoch=epoch, metric=f"consistency_{d}", space=name, value=float(value)))
            if name in self.previous:
                j, before = self.previous[name]
                value, unit_values = change(before, x, d, self.valid[j].to(self.device), valid)
                out[f"change_{d}"][j] = unit_values.cpu().numpy()
                rows += [dict(self.base, epoch=self.epochs[j], repeat=r, metric=f"change_{d}", space=name,
                              value=float(value[r])) for r in reps if self.done[j, r]]
        self.previous[name] = (i, x)

    def write(self, table: MetricsTable, units: UnitMetrics) -> None:
        """Per-unit arrays first, each space's table file last: its presence means "finished"."""
        run, layer = self.run.name, self.layer
        for space in self.spaces:  # a half-rewritten result must never look finished
            (table.root / "analyze" / f"{_space_key(run, layer, space.name)}.parquet").unlink(missing_ok=True)
        if self.mask_rows:
            table.write("analyze", f"{run}/{layer}/rf_masks", self.mask_rows)
        for space in self.spaces:
            units.write(space.name, run, layer, self.per_unit[space.name])
            table.write("analyze", _space_key(run, layer, space.name), self.rows[space.name])


def _layer_masks(ds, device) -> torch.Tensor | None:
    """(E, S, S) or, per unit, (E, U, S, S); NaN where an epoch has none (then unmasked)."""
    name = "rf_mask_unit" if "rf_mask_unit" in ds else "rf_mask"
    return torch.as_tensor(ds[name].values).to(device) if name in ds else None


def _vectors(space, images: torch.Tensor, reps: list[int], index: int, epochs: list[int], run: str, layer: str,
             embeddings, stored_done: dict, batch_size: int) -> torch.Tensor:
    """(R, U, 3, S, S) masked prototypes of one epoch -> (R, U, F) vectors of `space`.

    A model space embeds only the blocks not yet stored, stores them, and reads the others back;
    rows of repeats not finished stay NaN (and are never valid)."""
    from ..analyze.embeddings import embed_images

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


STAGE = AnalyzeStage()
