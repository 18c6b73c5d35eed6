"""Convergent learning's results on disk: netCDF files with named dimensions under ``STORE/align/``.

``epoch_NNN/<a>~<b>/<layer>.nc`` (a pair at an epoch), ``epoch_NNN/summary.nc`` (CKA among every run
there), ``track/<run>/<layer>.nc`` (every epoch against the final one) and ``track/<run>/cka.nc``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from ..atomic import atomic_path
from . import layout


def align_root(study) -> Path:
    return layout.alignment(study)


def write_result(ds: xr.Dataset, path: Path) -> None:
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
