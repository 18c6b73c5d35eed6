"""Do two stores hold the same results? The check behind "a resumed or distributed run changes nothing".

`differences(a, b)` reads every result the way its writer stored it — Zarr arrays value by value
(and their attributes), checkpoints tensor by tensor, RSA's HDF5 datasets, alignment's netCDF
datasets, the metrics table row by row — and lists what differs. Figures are drawings, not results,
and wall-clock times differ from run to run: both are left out, and so are the write locks' files.
`leftovers(store)` lists the temporary files a killed write leaves (Zarr's ``*.partial``, ours
``.*.tmp``), which a finished run must have swept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import layout

DRAWINGS = ("figures", "prototypes")
TIMINGS = {"seconds", "trust_seconds"}  # metrics that measure wall time


def leftovers(store: str | Path) -> list[Path]:
    """Temporary files under `store`: a killed write's remains."""
    store = Path(store)
    return sorted(p for pattern in ("*.partial", ".*.tmp") for p in store.rglob(pattern))


def differences(a: str | Path, b: str | Path) -> list[str]:
    """Everything that differs between the results in stores `a` and `b` (empty: the same results)."""
    a, b = Path(a), Path(b)
    files_a, files_b = _results(a), _results(b)
    found = [f"only in {a}: {p}" for p in sorted(files_a - files_b)]
    found += [f"only in {b}: {p}" for p in sorted(files_b - files_a)]
    for rel in sorted(files_a & files_b):
        if rel.suffix == ".zarr":
            found += _zarr_differences(a / rel, b / rel, rel)
        elif rel.suffix == ".parquet":
            continue  # compared as one table below
        elif not _same_file(a / rel, b / rel):
            found.append(f"{rel} differs")
    found += _metrics_differences(a, b)
    return found


def _results(store: Path) -> set[Path]:
    """Result files relative to `store`; a Zarr store counts as one entry (compared array by array)."""
    found = set()
    for path in store.rglob("*"):
        rel = path.relative_to(store)
        if (rel.parts[0] in DRAWINGS or rel.name in layout.LOCKS.values()
                or any(part.endswith(".zarr") for part in rel.parts[:-1])):
            continue
        if path.is_dir() and path.suffix != ".zarr":
            continue
        found.add(rel)
    return found


def _zarr_differences(a: Path, b: Path, rel: Path) -> list[str]:
    import zarr

    def nodes(path):
        group = zarr.open_group(path, mode="r", zarr_format=3)
        return {name: node for name, node in group.members(max_depth=None)}

    nodes_a, nodes_b = nodes(a), nodes(b)
    found = [f"{rel}/{name}: only in one store" for name in sorted(set(nodes_a) ^ set(nodes_b))]
    for name in sorted(set(nodes_a) & set(nodes_b)):
        x, y = nodes_a[name], nodes_b[name]
        if dict(x.attrs) != dict(y.attrs):
            found.append(f"{rel}/{name}: attributes differ")
        if isinstance(x, zarr.Array) and not _same_array(x[...], y[...] if isinstance(y, zarr.Array) else None):
            found.append(f"{rel}/{name}: values differ")
    return found


def _same_array(x, y) -> bool:
    if y is None or np.shape(x) != np.shape(y) or np.asarray(x).dtype != np.asarray(y).dtype:
        return False
    x, y = np.asarray(x), np.asarray(y)
    return bool(np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"))


def _same_file(a: Path, b: Path) -> bool:
    if a.suffix == ".safetensors":
        return _same_tensors(a, b)
    if a.suffix == ".hdf5":
        return _same_hdf5(a, b)
    if a.suffix == ".nc":
        import xarray as xr

        with xr.open_dataset(a) as x, xr.open_dataset(b) as y:
            return x.identical(y)
    return a.read_bytes() == b.read_bytes()


def _same_tensors(a: Path, b: Path) -> bool:
    """Same tensor names and values (the metadata holds wall times, so it is not compared)."""
    from safetensors.numpy import load_file

    x, y = load_file(a), load_file(b)
    return x.keys() == y.keys() and all(_same_array(x[k], y[k]) for k in x)


def _same_hdf5(a: Path, b: Path) -> bool:
    import h5py

    def datasets(path):
        found = {}
        with h5py.File(path, "r") as f:
            f.visititems(lambda name, node: found.__setitem__(name, node[()]) if isinstance(node, h5py.Dataset) else None)
        return found

    x, y = datasets(a), datasets(b)
    return x.keys() == y.keys() and all(_same_array(x[k], y[k]) for k in x)


def _metrics_differences(a: Path, b: Path) -> list[str]:
    from .metrics import METRIC_COLUMNS, MetricsTable

    def table(store):
        frame = MetricsTable(store).read()
        frame = frame[~frame["metric"].isin(TIMINGS)]
        keys = [c for c in METRIC_COLUMNS if c != "value"]
        return frame.sort_values(keys, na_position="first").reset_index(drop=True)

    x, y = table(a), table(b)
    if x.drop(columns="value").equals(y.drop(columns="value")):
        same = np.array_equal(x["value"].to_numpy(float), y["value"].to_numpy(float), equal_nan=True)
        return [] if same else [f"metrics: {int((x['value'] != y['value']).sum())} values differ"]
    return [f"metrics: the rows differ ({len(x)} vs {len(y)} rows, timings left out)"]
