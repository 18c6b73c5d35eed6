"""The stimulus set's activations at every checkpoint, computed once and read by every analysis.

The layout, ``STORE/activations.zarr``::


    runs/<run>/<layer>/                 group; attrs record the settings (stimulus set, features, epochs)
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

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from zarr.errors import ContainsGroupError

from ..errors import UserError, did_you_mean
from .blocks import Array, BlockGroup, Schema
from .layout import ACTIVATIONS, check_name


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
        check_name("run", run)
        check_name("layer", layer)
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
    return ActivationStore(path if path.suffix == ".zarr" else path / ACTIVATIONS)


def read_activations(store, run: str, layer: str, epochs: list[int] | None = None) -> Activations:
    """Stored activations of one run and layer: `.values[epoch, image, unit]`, `.labels`, `.categories`, `.epochs`.

    `store` is a Study, its store folder, or the ``activations.zarr`` path; `epochs` defaults to
    every finished epoch.
    """
    return activation_store(store).read(run, layer, epochs)
