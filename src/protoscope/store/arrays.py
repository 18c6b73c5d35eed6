"""The study's array store: prototypes, scores, latents and RF maps in one Zarr v3 store.

Layout (one store per study, e.g. ``STORE/arrays.zarr``)::

    runs/<run>/<layer>/          group; attrs record the layer's settings
        epoch[epoch] repeat[repeat] unit[unit]        coordinates (real labels)
        prototype[epoch, repeat, unit, y, x, rgb]     uint8
        score[epoch, repeat, unit]                    float32
        latent[epoch, repeat, unit, dim]              float32
        trace[epoch, repeat, unit, step]              float32, NaN-padded
        silent[epoch, repeat, unit]                   bool
        done[epoch, repeat]                           bool, the job's marker
        rf_map[epoch, y, x], rf_mask[epoch, y, x]     float32
        rf_map_unit / rf_mask_unit[epoch, unit, y, x] float32, only with per_unit_rf
        rf_done[epoch]                                bool, the RF marker

Why this shape: every per-job array is chunked as one (epoch, repeat) block, the
RF arrays as one epoch, and the markers as one element. A job therefore writes
only its own chunk files, so workers on different machines never write the
same file, and its marker is set only after all its data: a crash leaves the
job "not done" and a rerun simply overwrites it. Every array carries zarr v3
``dimension_names``, so xarray opens the store as a `DataTree` with named dims.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import ZstdCodec
from zarr.errors import ContainsGroupError

from ..errors import UserError, did_you_mean
from .blocks import Array, BlockGroup, Schema, jsonable
from .layout import ARRAYS, check_name

# name -> (dims after (epoch, repeat), dtype, fill value). Float arrays fill with
# NaN so a never-written cell reads as "missing", not as a plausible 0.
JOB_ARRAYS: dict[str, tuple[tuple[str, ...], str, object]] = {
    "prototype": (("unit", "y", "x", "rgb"), "uint8", 0),
    "score": (("unit",), "float32", float("nan")),
    "latent": (("unit", "dim"), "float32", float("nan")),
    "trace": (("unit", "step"), "float32", float("nan")),
    "silent": (("unit",), "bool", False),
}
# name -> dims after (epoch,)
RF_ARRAYS: dict[str, tuple[str, ...]] = {"rf_map": ("y", "x"), "rf_mask": ("y", "x")}
RF_UNIT_ARRAYS: dict[str, tuple[str, ...]] = {
    "rf_map_unit": ("unit", "y", "x"),
    "rf_mask_unit": ("unit", "y", "x"),
}
_DESCRIPTIONS = {
    "prototype": "activation-maximizing image of each unit, RGB 0..255",
    "score": "the unit's objective value for its prototype",
    "latent": "the generator latent that produced the prototype",
    "trace": "score after each optimization step, NaN after the last step",
    "silent": "True where no latent excited the unit",
    "done": "True once every array of this (epoch, repeat) is written",
    "rf_map": "receptive-field map of the layer (mean over units)",
    "rf_mask": "receptive-field mask of the layer",
    "rf_map_unit": "receptive-field map of each unit",
    "rf_mask_unit": "receptive-field mask of each unit",
    "rf_done": "True once the epoch's receptive-field arrays are written",
}
# Settings recorded in a layer group's attributes; user attrs may not reuse these keys.
_SETTING_KEYS = ("epochs", "n_repeats", "n_units", "image_size", "latent_dim", "steps", "per_unit_rf")
# Images compress well and dominate the store's size; zstd level 3 is a good trade.
_IMAGE_CODEC = ZstdCodec(level=3)


@dataclass
class _Layer:
    """An opened layer group: its arrays and the epoch-number -> index map."""

    run: str
    name: str
    group: zarr.Group
    settings: dict
    epochs: list[int]
    arrays: dict[str, zarr.Array] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"runs/{self.run}/{self.name}"

    def array(self, name: str) -> zarr.Array:
        if name not in self.arrays:
            self.arrays[name] = self.group[name]
        return self.arrays[name]

    def epoch_index(self, epoch: int) -> int:
        try:
            return self.epochs.index(int(epoch))
        except (ValueError, TypeError):
            raise UserError(
                f"Epoch {epoch!r} is not stored for {self.where}; stored epochs: "
                f"{', '.join(map(str, self.epochs))}."
            ) from None

    def repeat_index(self, repeat: int) -> int:
        n = self.settings["n_repeats"]
        if not isinstance(repeat, (int, np.integer)) or not 0 <= int(repeat) < n:
            raise UserError(f"Repeat {repeat!r} is out of range for {self.where}: it holds repeats 0..{n - 1}.")
        return int(repeat)


class ArrayStore:
    """Read and write one study's Zarr array store (a directory such as ``STORE/arrays.zarr``).

    Writers call `ensure_layer` once per (run, layer), then `write_job` /
    `write_rf` per job; `is_done` / `done_jobs` give resume for free.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._root: zarr.Group | None = None
        self._writable = False
        self._layers: dict[tuple[str, str], _Layer] = {}

    def __repr__(self) -> str:
        return f"ArrayStore({str(self.path)!r})"

    # ------------------------------------------------------------------ opening
    def _open_root(self, write: bool) -> zarr.Group | None:
        """The root group; created when writing, None when reading a store that does not exist."""
        if self._root is not None and (self._writable or not write):
            return self._root
        if write:
            try:
                self._root = zarr.open_group(self.path, mode="a", zarr_format=3)
            except ContainsGroupError:  # another worker created the store between check and create
                self._root = zarr.open_group(self.path, mode="r+", zarr_format=3)
            self._writable = True
        elif (self.path / "zarr.json").is_file():
            self._root = zarr.open_group(self.path, mode="r", zarr_format=3)
        else:
            return None
        return self._root

    def _layer(self, run: str, layer: str) -> _Layer:
        key = (run, layer)
        if key in self._layers:
            return self._layers[key]
        root = self._open_root(write=False)
        runs = self.runs()
        if run not in runs:
            where = f"the array store {self.path}" if root is not None else f"{self.path} (no array store there yet)"
            raise UserError(f"No run {run!r} in {where}.{did_you_mean(run, runs) if runs else ''}")
        layers = self.layers(run)
        if layer not in layers:
            raise UserError(f"No layer {layer!r} stored for run {run!r} in {self.path}.{did_you_mean(layer, layers)}")
        group = root[f"runs/{run}/{layer}"]
        settings = dict(group.attrs)
        # The labels of the `epoch` coordinate, read from the group attrs: those are written in one
        # atomic file when the group is created, so a reader racing `ensure_layer` never sees a
        # half-written coordinate (ensure_layer keeps the two identical).
        opened = _Layer(run, layer, group, settings, [int(e) for e in settings["epochs"]])
        self._layers[key] = opened
        return opened

    def _writable_layer(self, run: str, layer: str) -> _Layer:
        """A layer opened for writing (the read-only handle is dropped if there was one)."""
        if not self._writable:
            self._open_root(write=True)
            self._layers.clear()
        return self._layer(run, layer)

    # ------------------------------------------------------------------ layout
    def ensure_layer(
        self,
        run: str,
        layer: str,
        *,
        epochs: list[int],
        repeats: int,
        units: int,
        image_size: int,
        latent_dim: int,
        steps: int,
        per_unit_rf: bool = False,
        attrs: dict | None = None,
    ) -> None:
        """Create the layer's group and arrays if missing; refuse if they exist with other settings.

        Idempotent, and safe when several workers call it at once: whoever loses
        a creation race re-checks what the winner wrote.
        """
        check_name("run", run)
        check_name("layer", layer)
        epochs = [int(e) for e in epochs]
        if not epochs or len(set(epochs)) != len(epochs):
            raise UserError(f"epochs must be a non-empty list of distinct epoch numbers; got {epochs}.")
        epochs = sorted(epochs)
        for label, value in (("repeats", repeats), ("units", units), ("image_size", image_size),
                             ("latent_dim", latent_dim), ("steps", steps)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise UserError(f"{label} must be a positive integer; got {value!r}.")
        attrs = dict(attrs or {})
        clash = sorted(set(attrs) & set(_SETTING_KEYS))
        if clash:
            raise UserError(f"attrs may not use the reserved keys {clash}; reserved: {list(_SETTING_KEYS)}.")
        settings = jsonable({
            **attrs, "epochs": epochs, "n_repeats": int(repeats), "n_units": int(units),
            "image_size": int(image_size), "latent_dim": int(latent_dim), "steps": int(steps),
            "per_unit_rf": bool(per_unit_rf),
        })

        for group in self._groups(run, layer, epochs, int(repeats), int(units), int(image_size), int(latent_dim),
                                  int(steps), bool(per_unit_rf)):
            group.create(settings)
        self._layers.pop((run, layer), None)

    def _groups(self, run, layer, epochs, R, U, S, latent_dim, steps, per_unit_rf) -> tuple[BlockGroup, BlockGroup]:
        """The layer's two block sets: jobs (epoch, repeat) marked by `done`, RFs (epoch,) by `rf_done`."""
        E = len(epochs)
        sizes = {"unit": U, "y": S, "x": S, "rgb": 3, "dim": latent_dim, "step": steps}
        jobs = {name: Array(("epoch", "repeat", *dims), (E, R, *(sizes[d] for d in dims)), dtype, fill,
                            [_IMAGE_CODEC] if name == "prototype" else "auto", _DESCRIPTIONS[name])
                for name, (dims, dtype, fill) in JOB_ARRAYS.items()}
        rf = {name: Array(("epoch", *dims), (E, *(sizes[d] for d in dims)), "float32", float("nan"),
                          description=_DESCRIPTIONS[name])
              for name, dims in dict(RF_ARRAYS, **(RF_UNIT_ARRAYS if per_unit_rf else {})).items()}
        coords = {"epoch": np.asarray(epochs, dtype="int64"), "repeat": np.arange(R, dtype="int64"),
                  "unit": np.arange(U, dtype="int64")}
        return (self._block(run, layer, Schema(jobs, blocks=2, coords=coords)),
                self._block(run, layer, Schema(rf, blocks=1, done="rf_done")))

    def _block(self, run: str, layer: str, schema: Schema | None = None, marker: str = "done") -> BlockGroup:
        return BlockGroup(self.path / "runs" / run / layer, schema, "the array store", self.path, marker)

    # ------------------------------------------------------------------ jobs
    def write_job(self, run: str, layer: str, epoch: int, repeat: int, *, prototype, score, latent, trace,
                  silent) -> None:
        """Write one job's arrays, then mark it done. Rewriting a job is harmless.

        A finished job being rewritten is un-marked first, so "done" always means
        one complete write. `trace` may be shorter than the layer's `steps`; it is
        NaN-padded.
        """
        lay = self._writable_layer(run, layer)
        e, r = lay.epoch_index(epoch), lay.repeat_index(repeat)
        s = lay.settings
        U, S = s["n_units"], s["image_size"]
        where = f"{lay.where} epoch {epoch} repeat {repeat}"
        prototype = _checked(where, "prototype", prototype, (U, S, S, 3), "uint8")
        score = _checked(where, "score", score, (U,), "float")
        latent = _checked(where, "latent", latent, (U, s["latent_dim"]), "float")
        silent = _checked(where, "silent", silent, (U,), "bool")
        trace = np.asarray(trace)
        if trace.ndim == 2 and trace.shape[0] == U and trace.shape[1] < s["steps"]:
            trace = np.pad(trace.astype("float32"), ((0, 0), (0, s["steps"] - trace.shape[1])),
                           constant_values=np.nan)
        trace = _checked(where, "trace", trace, (U, s["steps"]), "float")

        self._block(run, layer).write((e, r), {"prototype": prototype, "score": score, "latent": latent,
                                                "trace": trace, "silent": silent})

    def is_done(self, run: str, layer: str, epoch: int, repeat: int) -> bool:
        lay = self._layer(run, layer)
        return bool(lay.array("done")[lay.epoch_index(epoch), lay.repeat_index(repeat)])

    def done_jobs(self, run: str, layer: str) -> set[tuple[int, int]]:
        """The finished (epoch number, repeat) pairs of a layer."""
        lay = self._layer(run, layer)
        flags = lay.array("done")[:]
        return {(lay.epochs[e], int(r)) for e, r in np.argwhere(flags)}

    def read_job(self, run: str, layer: str, epoch: int, repeat: int) -> dict[str, np.ndarray]:
        """One finished job's arrays: prototype, score, latent, trace, silent."""
        lay = self._layer(run, layer)
        e, r = lay.epoch_index(epoch), lay.repeat_index(repeat)
        if not lay.array("done")[e, r]:
            raise UserError(f"{lay.where} epoch {epoch} repeat {repeat} is not done yet in {self.path}.")
        return {name: np.asarray(lay.array(name)[e, r]) for name in JOB_ARRAYS}

    # ------------------------------------------------------------------ receptive fields
    def write_rf(self, run: str, layer: str, epoch: int, rf_map, rf_mask, unit_maps=None,
                 unit_masks=None) -> None:
        """Write an epoch's receptive-field map and mask (and per-unit ones), then mark it."""
        lay = self._writable_layer(run, layer)
        e = lay.epoch_index(epoch)
        s = lay.settings
        U, S = s["n_units"], s["image_size"]
        where = f"{lay.where} epoch {epoch}"
        values = {"rf_map": _checked(where, "rf_map", rf_map, (S, S), "float"),
                  "rf_mask": _checked(where, "rf_mask", rf_mask, (S, S), "float")}
        if s["per_unit_rf"]:
            if unit_maps is None or unit_masks is None:
                raise UserError(f"{lay.where} stores per-unit receptive fields: pass unit_maps and unit_masks.")
            values["rf_map_unit"] = _checked(where, "unit_maps", unit_maps, (U, S, S), "float")
            values["rf_mask_unit"] = _checked(where, "unit_masks", unit_masks, (U, S, S), "float")
        elif unit_maps is not None or unit_masks is not None:
            raise UserError(f"{lay.where} was created without per-unit receptive fields; "
                            "create it with per_unit_rf=True to store unit_maps and unit_masks.")
        self._block(run, layer, marker="rf_done").write((e,), values)

    def has_rf(self, run: str, layer: str, epoch: int) -> bool:
        lay = self._layer(run, layer)
        return bool(lay.array("rf_done")[lay.epoch_index(epoch)])

    def done_rf(self, run: str, layer: str) -> set[int]:
        """The epoch numbers whose receptive fields are stored."""
        lay = self._layer(run, layer)
        return {lay.epochs[e] for e in np.flatnonzero(lay.array("rf_done")[:])}

    def read_rf(self, run: str, layer: str, epoch: int) -> dict[str, np.ndarray]:
        """An epoch's stored receptive-field arrays (rf_map, rf_mask, and the per-unit ones if any)."""
        lay = self._layer(run, layer)
        e = lay.epoch_index(epoch)
        if not lay.array("rf_done")[e]:
            raise UserError(f"{lay.where} epoch {epoch} has no receptive field stored yet in {self.path}.")
        names = list(RF_ARRAYS) + (list(RF_UNIT_ARRAYS) if lay.settings["per_unit_rf"] else [])
        return {name: np.asarray(lay.array(name)[e]) for name in names}

    # ------------------------------------------------------------------ listing
    def runs(self) -> list[str]:
        root = self._open_root(write=False)
        if root is None or "runs" not in root:
            return []
        return sorted(root["runs"].group_keys())

    def layers(self, run: str) -> list[str]:
        runs = self.runs()
        if run not in runs:
            raise UserError(f"No run {run!r} in the array store {self.path}.{did_you_mean(run, runs) if runs else ''}")
        return sorted(self._open_root(write=False)[f"runs/{run}"].group_keys())

    def has_layer(self, run: str, layer: str) -> bool:
        return run in self.runs() and layer in self.layers(run)

    def settings(self, run: str, layer: str) -> dict:
        """The settings (and user attrs) a layer was created with."""
        return dict(self._layer(run, layer).settings)


def _checked(where: str, name: str, value, shape: tuple, kind: str) -> np.ndarray:
    """The value as the stored dtype, or a clear error naming what is wrong."""
    array = np.asarray(value)
    if array.shape != tuple(shape):
        raise UserError(f"{name} for {where} has shape {array.shape}, expected {tuple(shape)}.")
    if kind == "uint8" and array.dtype != np.uint8:
        raise UserError(f"{name} for {where} must be uint8 (0..255), got {array.dtype}; "
                        "convert with (images * 255).round().astype(np.uint8).")
    if kind == "bool" and array.dtype != np.bool_:
        raise UserError(f"{name} for {where} must be bool, got {array.dtype}.")
    if kind == "float":
        if not np.issubdtype(array.dtype, np.floating):
            raise UserError(f"{name} for {where} must be floating point, got {array.dtype}.")
        array = array.astype(np.float32, copy=False)
    return array


def open_store(path: str | Path):
    """The whole array store as a read-only xarray `DataTree`.

    Each ``runs/<run>/<layer>`` node is a Dataset with named dims and real
    coordinate labels, e.g. ``dt["runs/r/layer3"].ds.prototype.sel(epoch=5, repeat=0)``.
    Arrays load lazily.  `path` is the ``arrays.zarr`` folder or the study's
    store folder that holds it.
    """
    import xarray as xr

    path = Path(path)
    if not (path / "zarr.json").is_file() and (path / ARRAYS / "zarr.json").is_file():
        path = path / ARRAYS
    if not (path / "zarr.json").is_file():
        hint = " (the folder exists but holds no Zarr v3 store)" if path.exists() else ""
        raise UserError(f"No array store at {path}{hint}.")
    # No consolidated metadata: writers never rewrite a shared metadata file.
    return xr.open_datatree(path, engine="zarr", consolidated=False, zarr_format=3)
