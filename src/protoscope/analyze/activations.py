"""Activations of a fixed, labelled probe set at every checkpoint: computed once, reused by every analysis.

RSA, alignment and atlases all start from the same numbers — what each unit of
a layer answers to each probe image at each epoch — so they are computed once
per (run, layer, epoch) and stored in their own Zarr v3 store,
``STORE/activations.zarr``::

    runs/<run>/<layer>/                 group; attrs record the settings (probe set, features, epochs)
        activation[epoch, image, unit]  float32; one chunk per epoch
        label[image]                    int64, index into attrs["categories"]
        done[epoch]                     bool, set after the epoch's chunk: the resume marker
        epoch[epoch] image[image] unit[unit]   coordinates

Every array carries zarr v3 ``dimension_names``, so
``xarray.open_datatree(path, engine="zarr")`` names every dimension. A conv
layer's unit is a channel averaged over space (``features: mean``, the
default) or one (channel, y, x) position (``features: flatten``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import zarr
from torch import nn
from zarr.errors import ContainsGroupError

from ..data.datasets import Labelled, labelled, normalize
from ..errors import UserError, did_you_mean
from ..jobs import Job
from ..nets.checkpoints import epoch_files, load_into
from ..nets.layers import Truncated, check_layers, truncate
from ..nets.models import build_model
from ..store.blocks import Array, BlockGroup, Schema, settings_diff

STORE_NAME = "activations.zarr"


# --------------------------------------------------------------------------- probe set and forward pass


def probe_set(study) -> Labelled:
    """The study's labelled probe images: `rsa.images` of `rsa.data` (default: the first run's data).

    One set for every run, so representations compare across runs as well as epochs.
    """
    spec = study.rsa.data or study.runs[0].data
    key = (spec.model_dump_json(), study.rsa.images)
    if key not in _PROBES:  # cached per process: a pure function of the data spec
        _PROBES.clear()
        _PROBES[key] = labelled(spec, "probe", study.rsa.images)
    return _PROBES[key]


_PROBES: dict = {}


@torch.no_grad()
def stream_activations(model: nn.Module, layers, images: torch.Tensor, *, device, batch_size: int = 256,
                       pool: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Per batch of uint8 images (N, 3, S, S): {layer: float32 activations} from one truncated forward pass.

    Conv outputs are averaged over space when `pool` ((B, C)), raw otherwise ((B, C, H, W)).
    Tensors stay on `device`; the model is put in eval mode there.
    """
    device = torch.device(device)
    layers = [layers] if isinstance(layers, str) else list(layers)
    yield from _stream(truncate(model.to(device).eval(), layers).to(device), layers, images, device, batch_size, pool)


@torch.no_grad()
def _stream(net: nn.Module, layers: list[str], images: torch.Tensor, device: torch.device, batch_size: int,
            pool: bool) -> Iterator[dict[str, torch.Tensor]]:
    for start in range(0, len(images), batch_size):
        out = net(normalize(images[start : start + batch_size].to(device)))
        batch = {}
        for layer in layers:
            a = out[layer].float()
            batch[layer] = a.mean(dim=tuple(range(2, a.ndim))) if pool and a.ndim > 2 else a
        yield batch


def layer_activations(model: nn.Module, layers, images: torch.Tensor, *, device, batch_size: int = 256,
                      features: str = "mean") -> dict[str, torch.Tensor]:
    """{layer: (N, units) float32 on `device`}: spatial means (`mean`) or flattened maps (`flatten`)."""
    if features not in ("mean", "flatten"):
        raise UserError(f"Unknown features {features!r}; valid: mean, flatten")
    device = torch.device(device)
    layers = [layers] if isinstance(layers, str) else list(layers)
    # `model` may already be truncated (a run's checkpoints reuse one traced graph: tracing costs a forward pass)
    net = model if isinstance(model, Truncated) else truncate(model.to(device).eval(), layers).to(device)
    parts: dict[str, list[torch.Tensor]] = {}
    for batch in _stream(net, layers, images, device, batch_size, features == "mean"):
        for layer, a in batch.items():
            parts.setdefault(layer, []).append(a.flatten(1))
    return {layer: torch.cat(chunks) for layer, chunks in parts.items()}


# --------------------------------------------------------------------------- the store


@dataclass(frozen=True)
class Activations:
    """One run × layer: `values[epoch, image, unit]` for the listed epochs, with the images' labels."""

    run: str
    layer: str
    values: np.ndarray  # float32 (epoch, image, unit)
    labels: np.ndarray  # int64 (image,), indexes `categories`
    categories: tuple[str, ...]
    epochs: list[int]

    def at(self, epoch: int) -> np.ndarray:
        """The (image, unit) matrix of one epoch."""
        if epoch not in self.epochs:
            raise UserError(f"Epoch {epoch} not loaded for {self.run}/{self.layer}; loaded: {self.epochs}")
        return self.values[self.epochs.index(epoch)]


def _check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not name or "/" in name or name in (".", "..") or name.startswith("__"):
        raise UserError(f"Invalid {kind} name {name!r}: it must be a non-empty string without '/'.")
    return name


class ActivationStore:
    """Read and write ``activations.zarr``. Writers: `write_epoch`; readers: `read`, `done_epochs`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"ActivationStore({str(self.path)!r})"

    def _root(self, write: bool) -> zarr.Group | None:
        if write:
            try:
                return zarr.open_group(self.path, mode="a", zarr_format=3)
            except ContainsGroupError:  # another worker created it between check and create
                return zarr.open_group(self.path, mode="r+", zarr_format=3)
        if not (self.path / "zarr.json").is_file():
            return None
        return zarr.open_group(self.path, mode="r", zarr_format=3)

    # ------------------------------------------------------------------ listing
    def runs(self) -> list[str]:
        root = self._root(False)
        return sorted(root["runs"].group_keys()) if root is not None and "runs" in root else []

    def layers(self, run: str) -> list[str]:
        runs = self.runs()
        if run not in runs:
            where = self.path if runs else f"{self.path} (no activations stored yet; run `protoscope rsa`)"
            raise UserError(f"No activations of run {run!r} in {where}.{did_you_mean(run, runs) if runs else ''}")
        return sorted(self._root(False)[f"runs/{run}"].group_keys())

    def has_layer(self, run: str, layer: str) -> bool:
        return run in self.runs() and layer in self.layers(run)

    def _group(self, run: str, layer: str) -> zarr.Group:
        layers = self.layers(run)
        if layer not in layers:
            raise UserError(f"No activations of layer {layer!r} for run {run!r} in {self.path}.{did_you_mean(layer, layers)}")
        return self._root(False)[f"runs/{run}/{layer}"]

    def settings(self, run: str, layer: str) -> dict:
        return dict(self._group(run, layer).attrs)

    def done_epochs(self, run: str, layer: str) -> list[int]:
        """The epochs whose activations are completely written (empty if the layer is not stored)."""
        if not self.has_layer(run, layer):
            return []
        group = self._group(run, layer)
        epochs = group.attrs["epochs"]
        return [epochs[i] for i in np.flatnonzero(group["done"][:])]

    # ------------------------------------------------------------------ writing
    def _block_group(self, run: str, layer: str, epochs=None, n_images=None, n_units=None, labels=None) -> BlockGroup:
        """The (run, layer) group; the schema is given when creating it."""
        schema = None
        if epochs is not None:
            E, N, U = len(epochs), n_images, n_units
            schema = Schema({"activation": Array(("epoch", "image", "unit"), (E, N, U), "float32", float("nan"))},
                            blocks=1, coords={"epoch": np.asarray(epochs, dtype="int64"),
                                              "image": np.arange(N, dtype="int64"), "unit": np.arange(U, dtype="int64"),
                                              "label": (("image",), labels)})
        return BlockGroup(self.path / "runs" / run / layer, schema, "the activation store", self.path)

    def ensure_layer(self, run: str, layer: str, *, epochs: list[int], labels, categories, n_units: int,
                     settings: dict) -> None:
        """Create the layer's group and arrays if missing; a group made with other settings is an error."""
        _check_name("run", run)
        _check_name("layer", layer)
        labels = np.asarray(labels, dtype=np.int64)
        attrs = dict(settings, epochs=[int(e) for e in epochs], n_images=len(labels), n_units=int(n_units),
                     categories=list(categories))
        self._block_group(run, layer, epochs, len(labels), int(n_units), labels).create(attrs)

    def write_epoch(self, run: str, layer: str, epoch: int, values) -> None:
        """Write one epoch's (image, unit) matrix, then mark it done (un-marked first if rewritten)."""
        group = self._block_group(run, layer)
        attrs = group.settings()
        epochs = attrs["epochs"]
        if epoch not in epochs:
            raise UserError(f"Epoch {epoch} is not one of the stored epochs of {run}/{layer}: {epochs}")
        values = np.asarray(values, dtype=np.float32)
        want = (attrs["n_images"], attrs["n_units"])
        if values.shape != want:
            raise UserError(f"Activations for {run}/{layer} epoch {epoch} have shape {values.shape}, expected {want}.")
        group.write((epochs.index(epoch),), {"activation": values})

    # ------------------------------------------------------------------ reading
    def read(self, run: str, layer: str, epochs: list[int] | None = None) -> Activations:
        """The stored activations of `epochs` (default: every finished epoch), in the order given."""
        group = self._group(run, layer)
        stored = group.attrs["epochs"]
        done = set(self.done_epochs(run, layer))
        epochs = sorted(done) if epochs is None else [int(e) for e in epochs]
        missing = [e for e in epochs if e not in done]
        if missing:
            raise UserError(f"Activations of {run}/{layer} are not stored for epochs {missing} in {self.path}; "
                            f"stored: {sorted(done) or 'none'}. Run `protoscope rsa` (it computes them).")
        array = group["activation"]
        values = np.stack([array[stored.index(e)] for e in epochs]) if epochs else np.zeros(
            (0, group.attrs["n_images"], group.attrs["n_units"]), np.float32)
        return Activations(run, layer, values, np.asarray(group["label"][:]), tuple(group.attrs["categories"]), epochs)


def activation_store(where) -> ActivationStore:
    """The activation store of a Study, of a study's store folder, or at a ``*.zarr`` path."""
    if isinstance(where, ActivationStore):
        return where
    path = Path(where.store if hasattr(where, "store") else where)
    return ActivationStore(path if path.suffix == ".zarr" else path / STORE_NAME)


def read_activations(store, run: str, layer: str, epochs: list[int] | None = None) -> Activations:
    """Stored activations of one run and layer: `.values[epoch, image, unit]`, `.labels`, `.categories`, `.epochs`.

    `store` is a Study, its store folder, or the ``activations.zarr`` path; `epochs` defaults to
    every finished epoch.
    """
    return activation_store(store).read(run, layer, epochs)


# --------------------------------------------------------------------------- computing


def study_epochs(study, run, wanted: list[int] | None = None, field: str = "rsa.epochs") -> dict[int, Path]:
    """{epoch: checkpoint} of a run for an analysis: `wanted` (default: every checkpoint the run will have)."""
    folder = study.run_dir(run)
    files = epoch_files(folder)
    planned = list(files) if run.path is not None else list(range(run.epochs + 1))
    epochs = planned if wanted is None else sorted(set(int(e) for e in wanted))
    missing = [e for e in epochs if e not in files]
    if missing:
        raise UserError(f"Run {run.name!r} has no checkpoint for epochs {missing} in {folder} "
                        f"(it has {list(files) or 'none'}); train it first (protoscope train) or change `{field}`.")
    return {e: files[e] for e in epochs}


def activation_settings(study) -> dict:
    """What determines stored activations besides the run and layer (compared on resume)."""
    spec = study.rsa
    data = (spec.data or study.runs[0].data).model_dump(mode="json")
    return {"probe": {"data": data, "images": spec.images}, "features": spec.features}


def compute_activations(study, runs: list[str] | None = None, layers: list[str] | None = None, *,
                        progress=None, executor=None) -> int:
    """Store the probe set's activations for every run × layer × epoch not yet stored; returns epochs computed.

    Layers default to `rsa.layers` (or the study's layers), epochs to `rsa.epochs` (or every
    checkpoint). One job per (run, epoch): all its layers come from one forward pass truncated at the
    deepest.
    """
    from ..jobs import execute

    stage = ActivationStage(tuple(layers) if layers else None)
    return execute(stage, study, executor, runs, progress).done_now


class ActivationStage:
    """Jobs (run, epoch, layers): the probe set's activations at one checkpoint, every layer at once."""

    name = "activations"

    def __init__(self, layers: tuple[str, ...] | None = None):
        self.layers = layers

    def plan(self, study, runs):
        spec, store, settings = study.rsa, activation_store(study), activation_settings(study)
        jobs = []
        for run in [study.run(n) for n in runs] if runs else study.runs:
            files = study_epochs(study, run, spec.epochs)
            names = check_layers(build_model(run.arch, run.width, run.small_input),
                                 list(self.layers or spec.layers or study.layers))
            for layer in names:  # refuse other settings before any work
                _check_stored(store, run.name, layer, settings, list(files))
            jobs += [Job(ACTIVATIONS_REF, (run.name, epoch, tuple(names)), run.name) for epoch in files]
        return jobs

    def prepare(self, study, jobs) -> None:
        """Every (run, layer) group created before any job runs (unit counts from one probe image)."""
        store, settings, probe = activation_store(study), activation_settings(study), None
        for run_name, names in dict.fromkeys((j.key[0], j.key[2]) for j in jobs):
            missing = [layer for layer in names if not store.has_layer(run_name, layer)]
            if not missing:
                continue
            if probe is None:
                from .rsa import check_categories  # the analyses compare categories: one is not enough

                probe = probe_set(study)
                check_categories(probe.labels.numpy(), probe.categories)
            run = study.run(run_name)
            files = study_epochs(study, run, study.rsa.epochs)
            # the first checkpoint is read before the store is touched: a corrupt file or NaN weights
            # stop the stage with the store as it was
            model = load_into(build_model(run.arch, run.width, run.small_input), next(iter(files.values())))
            units = {k: v.shape[1] for k, v in layer_activations(model, missing, probe.images[:1], device="cpu",
                                                                 features=study.rsa.features).items()}
            epochs = list(files)
            for layer in missing:
                store.ensure_layer(run_name, layer, epochs=epochs, labels=probe.labels.numpy(),
                                   categories=probe.categories, n_units=units[layer], settings=settings)

    def is_done(self, study, job) -> bool:
        run, epoch, names = job.key
        store = activation_store(study)
        return all(epoch in store.done_epochs(run, layer) for layer in names)

    def run(self, study, job, device, emit) -> dict:
        run_name, epoch, names = job.key
        run, store = study.run(run_name), activation_store(study)
        todo = [layer for layer in names if epoch not in store.done_epochs(run_name, layer)]
        probe = probe_set(study)
        model, net = _traced(run.arch, run.width, run.small_input, names, str(device))
        load_into(model, study_epochs(study, run, [epoch])[epoch])
        acts = layer_activations(net, list(names), probe.images, device=device, batch_size=study.rsa.batch_size,
                                 features=study.rsa.features)
        for layer in todo:
            store.write_epoch(run_name, layer, epoch, acts[layer].cpu().numpy())
        emit(f"activations epoch {epoch}")
        return {"layers": len(todo)}


@lru_cache(maxsize=1)
def _traced(arch: str, width: float, small_input: bool, names: tuple[str, ...], device: str):
    """A model and its graph truncated at `names` (which shares the model's parameters): traced once
    per process, each job loading its own checkpoint into the model."""
    model = build_model(arch, width, small_input)
    return model, truncate(model.to(device).eval(), list(names)).to(device)


ACTIVATIONS = ActivationStage()
ACTIVATIONS_REF = f"{__name__}:ACTIVATIONS"


def _check_stored(store: ActivationStore, run: str, layer: str, settings: dict, epochs: list[int]) -> None:
    if not store.has_layer(run, layer):
        return
    stored = store.settings(run, layer)
    clash = settings_diff({k: stored.get(k) for k in settings}, settings)
    if clash or stored["epochs"] != epochs:
        clash = clash or f"epochs: stored {stored['epochs']}, now {epochs}"
        raise UserError(f"Activations of {run}/{layer} in {store.path} were computed with other "
                        f"settings ({clash}). Delete {store.path / 'runs' / run / layer} to "
                        "recompute them, or use another store.")
