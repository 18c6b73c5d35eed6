"""Per-unit prototype metrics on disk, indexed exactly like the prototypes (unit i is channel i).

``STORE/unit_metrics.zarr/<space>/<run>/<layer>/``: ``{diversity,change}_<distance>[epoch, repeat, unit]``
and ``consistency_<distance>[epoch, unit]``, a block group (`store.blocks`) per (space, run, layer),
one block per epoch. Arrays, not table rows: at the seed's scale a row per unit would put tens of
millions of rows in a table meant for curves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import layout
from .blocks import Array, BlockGroup, Schema

KINDS = ("diversity", "change", "consistency")


class UnitMetrics:
    """``unit_metrics.zarr/<space>/<run>/<layer>/``: a block group (`store.blocks`) per (space, run, layer),
    one block per epoch; attrs ``settings`` record what the values depend on."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _group(self, space: str, run: str, layer: str, schema=None):
        return BlockGroup(self.path / space / run / layer, schema, "the unit-metrics store", self.path)

    def settings(self, space: str, run: str, layer: str) -> dict | None:
        group = self._group(space, run, layer)
        return group.settings().get("settings") if group.exists() else None

    def create(self, space: str, run: str, layer: str, epochs: list[int], repeats: int, units: int,
               distances, settings: dict) -> None:
        """The group and its arrays, before any job runs; other settings are refused."""
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


def unit_values(study, space: str, run: str, layer: str, metric: str):
    """A per-unit array as an xarray DataArray (e.g. metric="change_mse"), or None when not computed."""
    import xarray as xr

    where = layout.unit_metrics(study) / space / run / layer
    if not (where / "zarr.json").is_file():
        return None
    ds = xr.open_zarr(where, consolidated=False, zarr_format=3)
    return ds[metric] if metric in ds else None
