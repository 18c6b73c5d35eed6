"""store.compare: equal stores compare equal, and each kind of result that differs is named."""

import shutil

import h5py
import numpy as np
import pytest
import xarray as xr
from safetensors.numpy import save_file

from protoscope.store import MetricsTable
from protoscope.store.blocks import Array, BlockGroup, Schema
from protoscope.store.compare import differences, leftovers


def make_store(root):
    group = BlockGroup(root / "arrays.zarr" / "runs" / "r" / "layer1",
                       Schema({"x": Array(("epoch", "unit"), (2, 3), "float32", float("nan"))}, blocks=1),
                       root=root / "arrays.zarr")
    group.create({"seed": 1})
    group.write((0,), {"x": np.array([1.0, np.nan, 3.0], "float32")})
    rows = [{"run": "r", "epoch": 1, "metric": "m", "value": 0.5}, {"run": "r", "epoch": 1, "metric": "seconds", "value": 9.0}]
    MetricsTable(root).write("probe", "r/epoch_001", rows)
    (root / "runs" / "r").mkdir(parents=True)
    save_file({"w": np.ones(4, "float32")}, root / "runs" / "r" / "epoch_001.safetensors", {"epoch": "1"})
    xr.Dataset({"c": ("u", np.arange(3.0))}).to_netcdf(root / "align.nc")
    with h5py.File(root / "rdm.hdf5", "w") as f:
        f["dissimilarities"] = np.arange(6.0)
    (root / "figures").mkdir()
    (root / "figures" / "a.png").write_bytes(b"one drawing")


@pytest.fixture
def pair(tmp_path):
    make_store(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    return tmp_path / "a", tmp_path / "b"


def test_copies_are_equal_and_drawings_and_timings_ignored(pair):
    a, b = pair
    (b / "figures" / "a.png").write_bytes(b"another drawing")
    rows = MetricsTable(b).read("probe")
    rows.loc[rows["metric"] == "seconds", "value"] = 1.0
    MetricsTable(b).write("probe", "r/epoch_001", rows)
    assert differences(a, b) == []


def test_each_kind_of_difference_is_named(pair):
    a, b = pair
    group = BlockGroup(b / "arrays.zarr" / "runs" / "r" / "layer1", root=b / "arrays.zarr")
    group.write((0,), {"x": np.array([1.0, np.nan, 3.5], "float32")})
    save_file({"w": np.full(4, 2, "float32")}, b / "runs" / "r" / "epoch_001.safetensors")
    xr.Dataset({"c": ("u", np.arange(3.0) + 1)}).to_netcdf(b / "align.nc")
    with h5py.File(b / "rdm.hdf5", "w") as f:
        f["dissimilarities"] = np.arange(6.0) * 2
    rows = MetricsTable(b).read("probe")
    rows.loc[rows["metric"] == "m", "value"] = 0.25
    MetricsTable(b).write("probe", "r/epoch_001", rows)
    (b / "runs" / "r" / "extra.yaml").write_text("x: 1")
    found = "\n".join(differences(a, b))
    for name in ("layer1/x: values differ", "epoch_001.safetensors differs", "align.nc differs",
                 "rdm.hdf5 differs", "metrics: 1 values differ", "only in " + str(b) + ": runs/r/extra.yaml"):
        assert name in found
    assert "done" not in found  # the block was rewritten and marked done again: the marks agree


def test_a_block_marked_done_in_one_store_only_is_found(pair):
    a, b = pair
    group = BlockGroup(b / "arrays.zarr" / "runs" / "r" / "layer1", root=b / "arrays.zarr")
    group.write((1,), {"x": np.full(3, np.nan, "float32")})  # the data equal the fill value; the mark is not
    assert differences(a, b) == ["arrays.zarr/runs/r/layer1/done: values differ"]


def test_leftovers_are_listed(tmp_path):
    make_store(tmp_path)
    assert leftovers(tmp_path) == []
    stale = [tmp_path / "arrays.zarr" / "x.0123.partial", tmp_path / "metrics" / ".epoch_001.parquet.ab12.tmp"]
    for path in stale:
        path.write_bytes(b"")
    assert leftovers(tmp_path) == sorted(stale)
