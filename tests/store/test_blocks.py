"""The block store: marks after data, settings recorded once (race-free) and checked, .partial swept."""

import multiprocessing as mp
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from protoscope.errors import UserError
from protoscope.atomic import link_if_absent
from protoscope.store.blocks import Array, BlockGroup, Schema

SCHEMA = Schema({"value": Array(("epoch", "repeat", "unit"), (3, 2, 4), "float32", float("nan")),
                 "image": Array(("epoch", "repeat", "y"), (3, 2, 5), "uint8", 0)},
                blocks=2, coords={"epoch": np.array([0, 5, 10])})


def _group(tmp_path) -> BlockGroup:
    return BlockGroup(tmp_path / "s.zarr" / "runs" / "a" / "layer1", SCHEMA, "the test store", tmp_path / "s.zarr")


def test_write_read_and_marks(tmp_path):
    group = _group(tmp_path)
    assert not group.exists() and not group.done().any()
    group.create({"lr": 0.1})
    group.create({"lr": 0.1})  # idempotent
    group.write((1, 0), {"value": np.arange(4, dtype="float32"), "image": np.full(5, 7, "uint8")})
    assert group.done().tolist() == [[False, False], [True, False], [False, False]]
    assert group.is_done((1, 0)) and not group.is_done((0, 0))
    np.testing.assert_array_equal(group.read("value", (1, 0)), np.arange(4))
    assert np.isnan(group.read("value", (0, 0))).all()
    import xarray as xr

    ds = xr.open_zarr(group.path, consolidated=False, zarr_format=3)
    assert ds.value.dims == ("epoch", "repeat", "unit") and list(ds.epoch.values) == [0, 5, 10]
    assert group.group()["value"].chunks == (1, 1, 4)  # one chunk per block, no shared shard


def test_done_mark_only_after_all_data(tmp_path, monkeypatch):
    group = _group(tmp_path)
    group.create({})
    group.write((0, 0), {"value": np.zeros(4, "float32"), "image": np.zeros(5, "uint8")})
    array_type = type(group.group()["image"])
    real = array_type.__setitem__

    class Killed(Exception):
        pass

    def dies(self, key, value):
        if self.basename == "image":
            raise Killed
        real(self, key, value)

    monkeypatch.setattr(array_type, "__setitem__", dies)
    with pytest.raises(Killed):  # a rewrite killed after its first array: not done any more
        group.write((0, 0), {"value": np.ones(4, "float32"), "image": np.ones(5, "uint8")})
    monkeypatch.undo()
    assert not BlockGroup(group.path, SCHEMA, root=group.root).is_done((0, 0))
    group.write((0, 0), {"value": np.ones(4, "float32"), "image": np.ones(5, "uint8")})  # resume
    assert group.is_done((0, 0)) and group.read("image", (0, 0)).tolist() == [1] * 5


def test_other_settings_are_a_clear_error(tmp_path):
    _group(tmp_path).create({"lr": 0.1, "steps": 4})
    with pytest.raises(UserError, match=r"the test store.*lr: stored 0.1, now 0.2") as err:
        _group(tmp_path).create({"lr": 0.2, "steps": 4})
    assert "steps" not in str(err.value) and "delete" in str(err.value)


def test_other_shape_is_a_clear_error(tmp_path):
    _group(tmp_path).create({})
    wider = Schema({"value": Array(("epoch", "repeat", "unit"), (3, 2, 8), "float32")}, blocks=2)
    with pytest.raises(UserError, match="value.*expected"):
        BlockGroup(_group(tmp_path).path, wider, "the test store", tmp_path / "s.zarr").create({})


def _create(args):
    root, lr = args
    from pathlib import Path

    group = BlockGroup(Path(root) / "s.zarr" / "runs" / "a" / "layer1", SCHEMA, "the test store", Path(root) / "s.zarr")
    try:
        group.create({"lr": lr})
        return "ok"
    except UserError:
        return "refused"


def test_settings_race_threads(tmp_path):
    """Eight workers record different settings at once: exactly one wins, the others are refused."""
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(_create, [(str(tmp_path), lr) for lr in range(8)]))
    assert results.count("ok") == 1 and results.count("refused") == 7
    assert not list(tmp_path.rglob("*.tmp"))


def test_settings_race_processes(tmp_path):
    """Processes starting at once with the same settings all succeed on one recorded copy."""
    with mp.get_context("fork").Pool(4) as pool:
        results = pool.map(_create, [(str(tmp_path), 0.5)] * 8)
    assert results == ["ok"] * 8
    assert _group(tmp_path).settings() == {"lr": 0.5}


def test_link_if_absent_never_overwrites(tmp_path):
    assert link_if_absent(tmp_path / "f.json", "first")
    assert not link_if_absent(tmp_path / "f.json", "second")
    assert (tmp_path / "f.json").read_text() == "first" and len(list(tmp_path.iterdir())) == 1


def test_partial_files_swept_on_create(tmp_path):
    group = _group(tmp_path)
    group.create({})
    left = group.path / "value" / "c" / "0" / "0" / "0.1234abcd.partial"  # what a killed zarr write leaves
    left.parent.mkdir(parents=True, exist_ok=True)
    left.write_bytes(b"half")
    live = left.with_name("0.5678ef.partial")  # a live writer's, just now: left alone
    live.write_bytes(b"writing")
    import os
    import time

    os.utime(left, (time.time() - 60, time.time() - 60))
    group.create({})
    assert not left.exists() and live.exists()


def test_read_only_store_is_a_user_error(tmp_path, monkeypatch):
    import errno

    import protoscope.atomic as atomic

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", read_only)
    with pytest.raises(UserError, match="Cannot write .*zarr.json: Read-only"):
        _group(tmp_path).create({})


def test_a_write_sweeps_what_a_killed_write_of_the_same_block_left(tmp_path):
    """A block has one writer, so its stale *.partial files go at once; another block's stay (its
    writer may be alive)."""
    group = _group(tmp_path)
    group.create({})
    mine = [group.path / "done" / "c" / "1" / "0.0f3a.partial"]
    mine += [group.path / name / "c" / "1" / "0" / "0.0f3a.partial" for name in SCHEMA.arrays]
    other = group.path / "done" / "c" / "1" / "1.0f3a.partial"
    for path in [*mine, other]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    group.write((1, 0), {name: np.zeros(spec.shape[2:], spec.dtype) for name, spec in SCHEMA.arrays.items()})
    assert not any(p.exists() for p in mine) and other.exists()


def test_an_atomic_write_removes_its_own_stale_temporaries(tmp_path):
    from protoscope.atomic import write_text

    stale, foreign = tmp_path / ".a.json.k3j.tmp", tmp_path / ".b.json.k3j.tmp"
    stale.write_text("half"), foreign.write_text("half")
    write_text(tmp_path / "a.json", "{}")
    assert not stale.exists() and foreign.exists() and (tmp_path / "a.json").read_text() == "{}"


def test_a_creation_killed_midway_is_not_complete_and_is_finished_by_the_next(tmp_path, monkeypatch):
    """The done array is created last: a group without it has no done blocks, and `create` completes it."""
    group = _group(tmp_path)
    real = BlockGroup._require_array

    def killed_at_the_marker(self, zgroup, name, spec):
        if name == "done":
            raise KeyboardInterrupt
        return real(self, zgroup, name, spec)

    monkeypatch.setattr(BlockGroup, "_require_array", killed_at_the_marker)
    with pytest.raises(KeyboardInterrupt):
        group.create({"lr": 0.1})
    assert group.exists() and not group.complete()
    assert not group.done().any() and not group.is_done((0, 0))
    monkeypatch.setattr(BlockGroup, "_require_array", real)
    group.create({"lr": 0.1})
    assert group.complete() and group.done().shape == (3, 2)
