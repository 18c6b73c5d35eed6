"""The Zarr array store: layout, round trips, resume markers, chunk isolation, xarray view."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os

import numpy as np
import pytest
import zarr

from protoscope.errors import UserError
from protoscope.store.arrays import JOB_ARRAYS, ArrayStore, open_store

RUN, LAYER = "clrjit-s0", "layer3.1.conv2"
EPOCHS, REPEATS, U, S, D, T = [0, 1, 5, 10], 2, 4, 8, 6, 5
LAYOUT = dict(epochs=EPOCHS, repeats=REPEATS, units=U, image_size=S, latent_dim=D, steps=T)


def job_data(seed: int, steps: int = T) -> dict:
    """Distinct, non-trivial arrays per seed (never all fill values, so every chunk is written)."""
    rng = np.random.default_rng(seed)
    trace = rng.normal(size=(U, steps)).astype(np.float32)
    return {
        "prototype": rng.integers(1, 256, size=(U, S, S, 3), dtype=np.uint8),
        "score": rng.normal(size=U).astype(np.float32),
        "latent": rng.normal(size=(U, D)),  # float64 on purpose: stored as float32
        "trace": trace,
        "silent": np.array([True, False, True, False]) ^ bool(seed % 2),
    }


@pytest.fixture
def store(tmp_path):
    s = ArrayStore(tmp_path / "arrays.zarr")
    s.ensure_layer(RUN, LAYER, **LAYOUT, attrs={"generator": "fourier"})
    return s


def snapshot(root) -> dict:
    """Every file under root -> (inode, mtime, content hash): a replaced or rewritten file changes."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            st = os.stat(p)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = (st.st_ino, st.st_mtime_ns, hashlib.sha1(fh.read()).hexdigest())
    return out


def changed(before: dict, after: dict) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def job_chunk_files(e: int, r: int) -> set[str]:
    """The chunk files of job (epoch index e, repeat r): one per per-job array plus its marker."""
    base = os.path.join("runs", RUN, LAYER)
    files = {os.path.join(base, "done", "c", str(e), str(r))}
    for name, (dims, _, _) in JOB_ARRAYS.items():
        files.add(os.path.join(base, name, "c", str(e), str(r), *["0"] * len(dims)))
    return files


def test_layout_shapes_dtypes_chunks(store):
    for i, (epoch, repeat) in enumerate([(0, 0), (5, 1), (10, 0)]):
        store.write_job(RUN, LAYER, epoch, repeat, **job_data(i))
    group = zarr.open_group(store.path / "runs" / RUN / LAYER, mode="r")
    E, R = len(EPOCHS), REPEATS
    expect = {
        "prototype": ((E, R, U, S, S, 3), "uint8", ("epoch", "repeat", "unit", "y", "x", "rgb")),
        "score": ((E, R, U), "float32", ("epoch", "repeat", "unit")),
        "latent": ((E, R, U, D), "float32", ("epoch", "repeat", "unit", "dim")),
        "trace": ((E, R, U, T), "float32", ("epoch", "repeat", "unit", "step")),
        "silent": ((E, R, U), "bool", ("epoch", "repeat", "unit")),
        "done": ((E, R), "bool", ("epoch", "repeat")),
        "rf_map": ((E, S, S), "float32", ("epoch", "y", "x")),
        "rf_mask": ((E, S, S), "float32", ("epoch", "y", "x")),
        "rf_done": ((E,), "bool", ("epoch",)),
    }
    for name, (shape, dtype, dims) in expect.items():
        arr = group[name]
        assert arr.shape == shape, name
        assert str(arr.dtype) == dtype, name
        assert tuple(arr.metadata.dimension_names) == dims, name
        # one chunk = one (epoch, repeat) block (or one epoch for RF, one element for markers)
        per_block = 1 if name == "rf_done" else (2 if name in JOB_ARRAYS or name == "done" else 1)
        assert arr.chunks == (1,) * per_block + shape[per_block:], name
    assert "rf_map_unit" not in group  # only with per_unit_rf
    assert group["epoch"][:].tolist() == EPOCHS
    assert group["repeat"][:].tolist() == [0, 1] and group["unit"][:].tolist() == [0, 1, 2, 3]
    assert "zstd" in str(group["prototype"].compressors).lower()
    assert group.attrs["generator"] == "fourier" and group.attrs["n_units"] == U


def test_round_trip_every_array(store, tmp_path):
    jobs = {(0, 0): 0, (1, 1): 1, (10, 1): 2}
    for (epoch, repeat), seed in jobs.items():
        data = job_data(seed)
        if seed == 2:
            data["trace"] = data["trace"][:, :3]  # early exit: shorter trace gets NaN-padded
        store.write_job(RUN, LAYER, epoch, repeat, **data)
    for (epoch, repeat), seed in jobs.items():
        want, got = job_data(seed), store.read_job(RUN, LAYER, epoch, repeat)
        assert set(got) == set(JOB_ARRAYS)
        np.testing.assert_array_equal(got["prototype"], want["prototype"])
        np.testing.assert_array_equal(got["score"], want["score"])
        np.testing.assert_array_equal(got["latent"], want["latent"].astype(np.float32))
        np.testing.assert_array_equal(got["silent"], want["silent"])
        assert got["latent"].dtype == np.float32 and got["silent"].dtype == bool
        if seed == 2:
            np.testing.assert_array_equal(got["trace"][:, :3], want["trace"][:, :3])
            assert np.isnan(got["trace"][:, 3:]).all()
        else:
            np.testing.assert_array_equal(got["trace"], want["trace"])
    assert store.done_jobs(RUN, LAYER) == set(jobs)
    assert store.is_done(RUN, LAYER, 10, 1) and not store.is_done(RUN, LAYER, 10, 0)
    with pytest.raises(UserError, match="not done"):
        store.read_job(RUN, LAYER, 5, 0)
    # a fresh handle (another process) reads the same
    again = ArrayStore(store.path)
    np.testing.assert_array_equal(again.read_job(RUN, LAYER, 1, 1)["prototype"], job_data(1)["prototype"])

    # receptive fields, per layer and per unit
    rng = np.random.default_rng(7)
    rf = ArrayStore(tmp_path / "rf.zarr")
    rf.ensure_layer(RUN, "layer2", **LAYOUT, per_unit_rf=True)
    maps = {k: rng.random(shape) for k, shape in
            [("rf_map", (S, S)), ("rf_mask", (S, S)), ("unit_maps", (U, S, S)), ("unit_masks", (U, S, S))]}
    assert not rf.has_rf(RUN, "layer2", 5)
    rf.write_rf(RUN, "layer2", 5, maps["rf_map"], maps["rf_mask"], maps["unit_maps"], maps["unit_masks"])
    assert rf.has_rf(RUN, "layer2", 5) and not rf.has_rf(RUN, "layer2", 0)
    assert rf.done_rf(RUN, "layer2") == {5}
    got = rf.read_rf(RUN, "layer2", 5)
    for stored, given in [("rf_map", "rf_map"), ("rf_mask", "rf_mask"), ("rf_map_unit", "unit_maps"),
                          ("rf_mask_unit", "unit_masks")]:
        np.testing.assert_array_equal(got[stored], maps[given].astype(np.float32))
    with pytest.raises(UserError, match="per-unit"):
        rf.write_rf(RUN, "layer2", 1, maps["rf_map"], maps["rf_mask"])
    with pytest.raises(UserError, match="per_unit_rf=True"):
        store.write_rf(RUN, LAYER, 1, maps["rf_map"], maps["rf_mask"], unit_maps=maps["unit_maps"],
                       unit_masks=maps["unit_masks"])


def test_open_store_named_dims_and_real_labels(store):
    store.write_job(RUN, LAYER, 5, 1, **job_data(3))
    store.write_rf(RUN, LAYER, 10, np.full((S, S), 0.5), np.eye(S))
    dt = open_store(store.path)
    ds = dt[f"runs/{RUN}/{LAYER}"].ds
    assert ds.prototype.dims == ("epoch", "repeat", "unit", "y", "x", "rgb")
    assert ds.latent.dims == ("epoch", "repeat", "unit", "dim")
    assert ds.trace.dims == ("epoch", "repeat", "unit", "step")
    assert ds.rf_mask.dims == ("epoch", "y", "x")
    assert ds.epoch.values.tolist() == EPOCHS and ds.unit.values.tolist() == list(range(U))
    assert ds.prototype.dtype == np.uint8 and ds.silent.dtype == bool  # no fill-value masking
    proto = ds.prototype.sel(epoch=5, repeat=1)  # by epoch number, not index
    np.testing.assert_array_equal(proto.values, job_data(3)["prototype"])
    np.testing.assert_array_equal(ds.score.sel(epoch=5, repeat=1, unit=2).values, job_data(3)["score"][2])
    assert np.isnan(ds.score.sel(epoch=1, repeat=0).values).all()  # never written: NaN, not 0
    np.testing.assert_array_equal(ds.rf_mask.sel(epoch=10).values, np.eye(S))
    assert ds.done.sel(epoch=5, repeat=1) and not ds.done.sel(epoch=5, repeat=0)
    assert ds.attrs["generator"] == "fourier"
    with pytest.raises(KeyError):
        ds.prototype.sel(epoch=2)


def test_done_only_after_all_data(store, monkeypatch):
    real_setitem = zarr.Array.__setitem__

    def crash_on_latent(self, key, value):
        if self.basename == "latent":
            raise OSError("disk full (simulated)")
        return real_setitem(self, key, value)

    monkeypatch.setattr(zarr.Array, "__setitem__", crash_on_latent)
    with pytest.raises(OSError, match="simulated"):
        store.write_job(RUN, LAYER, 5, 0, **job_data(0))
    assert not store.is_done(RUN, LAYER, 5, 0)
    assert not ArrayStore(store.path).is_done(RUN, LAYER, 5, 0)  # as another worker sees it
    assert store.done_jobs(RUN, LAYER) == set()
    monkeypatch.setattr(zarr.Array, "__setitem__", real_setitem)

    store.write_job(RUN, LAYER, 5, 0, **job_data(0))  # the resumed job completes it
    assert store.is_done(RUN, LAYER, 5, 0)
    np.testing.assert_array_equal(store.read_job(RUN, LAYER, 5, 0)["latent"], job_data(0)["latent"].astype(np.float32))

    # a crash while *rewriting* a finished job un-marks it: done never covers mixed data
    monkeypatch.setattr(zarr.Array, "__setitem__", crash_on_latent)
    with pytest.raises(OSError):
        store.write_job(RUN, LAYER, 5, 0, **job_data(1))
    assert not store.is_done(RUN, LAYER, 5, 0)
    monkeypatch.setattr(zarr.Array, "__setitem__", real_setitem)
    store.write_job(RUN, LAYER, 5, 0, **job_data(1))
    np.testing.assert_array_equal(store.read_job(RUN, LAYER, 5, 0)["prototype"], job_data(1)["prototype"])


def test_each_job_writes_only_its_own_chunk_files(store):
    root = store.path
    before = snapshot(root)
    store.write_job(RUN, LAYER, 5, 1, **job_data(0))  # epoch 5 is index 2
    after = snapshot(root)
    assert changed(before, after) == job_chunk_files(2, 1)

    store.write_job(RUN, LAYER, 10, 0, **job_data(1))  # leaves job (5, 1)'s files untouched
    later = snapshot(root)
    assert changed(after, later) == job_chunk_files(3, 0)

    store.write_job(RUN, LAYER, 5, 1, **job_data(2))  # a rewrite also stays in its own chunks
    assert changed(later, snapshot(root)) == job_chunk_files(2, 1)

    before = snapshot(root)
    store.write_rf(RUN, LAYER, 1, np.ones((S, S)), np.ones((S, S)))
    base = os.path.join("runs", RUN, LAYER)
    assert changed(before, snapshot(root)) == {
        os.path.join(base, "rf_map", "c", "1", "0", "0"),
        os.path.join(base, "rf_mask", "c", "1", "0", "0"),
        os.path.join(base, "rf_done", "c", "1"),
    }
    assert not [p for p in snapshot(root) if p.endswith(".partial")]  # no temp files left behind


def test_ensure_layer_idempotent_and_mismatch(store):
    store.write_job(RUN, LAYER, 0, 0, **job_data(0))
    files = snapshot(store.path)
    store.ensure_layer(RUN, LAYER, **LAYOUT, attrs={"generator": "fourier"})  # again: no-op
    store.ensure_layer(RUN, LAYER, **{**LAYOUT, "epochs": [10, 5, 1, 0]}, attrs={"generator": "fourier"})
    assert snapshot(store.path) == files
    assert store.is_done(RUN, LAYER, 0, 0)

    with pytest.raises(UserError, match=r"n_units: stored 4, now 8.*delete the group"):
        store.ensure_layer(RUN, LAYER, **{**LAYOUT, "units": 8}, attrs={"generator": "fourier"})
    with pytest.raises(UserError, match=r"epochs: stored \[0, 1, 5, 10\], now \[0, 1, 5, 20\]"):
        store.ensure_layer(RUN, LAYER, **{**LAYOUT, "epochs": [0, 1, 5, 20]}, attrs={"generator": "fourier"})
    with pytest.raises(UserError, match="generator: stored 'fourier', now 'deepsim'"):
        store.ensure_layer(RUN, LAYER, **LAYOUT, attrs={"generator": "deepsim"})
    with pytest.raises(UserError, match="reserved"):
        store.ensure_layer(RUN, "other", **LAYOUT, attrs={"n_units": 3})
    with pytest.raises(UserError, match="distinct"):
        store.ensure_layer(RUN, "other", **{**LAYOUT, "epochs": [0, 0]})
    assert snapshot(store.path) == files  # refused calls changed nothing


def test_wrong_epoch_repeat_and_names_list_valid_choices(store):
    with pytest.raises(UserError, match="Epoch 3 is not stored.*stored epochs: 0, 1, 5, 10"):
        store.write_job(RUN, LAYER, 3, 0, **job_data(0))
    with pytest.raises(UserError, match="stored epochs: 0, 1, 5, 10"):
        store.is_done(RUN, LAYER, 3, 0)
    with pytest.raises(UserError, match=r"repeats 0\.\.1"):
        store.is_done(RUN, LAYER, 5, 2)
    with pytest.raises(UserError, match="No layer 'layer3.1.conv3'.*Did you mean 'layer3.1.conv2'"):
        store.done_jobs(RUN, "layer3.1.conv3")
    with pytest.raises(UserError, match="No run 'clrjit-s1'.*clrjit-s0"):
        store.layers("clrjit-s1")
    with pytest.raises(UserError, match="Invalid layer name"):
        store.ensure_layer(RUN, "a/b", **LAYOUT)


def test_bad_shapes_and_dtypes_are_refused(store):
    bad = {
        "prototype": (job_data(0)["prototype"].astype(np.float32) / 255, "must be uint8"),
        "score": (np.zeros(U + 1, np.float32), r"shape \(5,\), expected \(4,\)"),
        "latent": (np.zeros((U, D + 1)), r"expected \(4, 6\)"),
        "trace": (np.zeros((U, T + 1)), r"expected \(4, 5\)"),
        "silent": (np.zeros(U, dtype=int), "must be bool"),
    }
    for name, (value, message) in bad.items():
        with pytest.raises(UserError, match=message):
            store.write_job(RUN, LAYER, 0, 0, **{**job_data(0), name: value})
    assert not store.is_done(RUN, LAYER, 0, 0)


def test_dotted_layer_names_are_single_groups(store):
    store.ensure_layer(RUN, "features.8", **LAYOUT)
    assert store.layers(RUN) == ["features.8", LAYER]
    assert (store.path / "runs" / RUN / LAYER / "zarr.json").is_file()  # one folder, not nested
    assert not (store.path / "runs" / RUN / "layer3").exists()
    store.write_job(RUN, "features.8", 1, 0, **job_data(4))
    assert store.done_jobs(RUN, "features.8") == {(1, 0)} and store.done_jobs(RUN, LAYER) == set()
    assert set(open_store(store.path)[f"runs/{RUN}"].children) == {"features.8", LAYER}
    # the study's store folder opens its arrays.zarr
    assert set(open_store(store.path.parent)[f"runs/{RUN}"].children) == {"features.8", LAYER}


def test_missing_store(tmp_path):
    with pytest.raises(UserError, match="No array store at .*nowhere.zarr"):
        open_store(tmp_path / "nowhere.zarr")
    empty = ArrayStore(tmp_path / "nowhere.zarr")
    assert empty.runs() == []
    with pytest.raises(UserError, match="no array store there yet"):
        empty.is_done(RUN, LAYER, 0, 0)
    assert not (tmp_path / "nowhere.zarr").exists()  # reading never creates it


def _worker(path, jobs, barrier):
    """One worker process: set up the layer (racing the other one), then write its jobs."""
    store = ArrayStore(path)
    barrier.wait()
    store.ensure_layer(RUN, LAYER, **LAYOUT, attrs={"generator": "fourier"})
    for epoch, repeat, seed in jobs:
        store.write_job(RUN, LAYER, epoch, repeat, **job_data(seed))


def test_two_processes_write_disjoint_jobs(tmp_path):
    path = tmp_path / "arrays.zarr"
    # fork: the parent already imported everything, so children start at once (zarr resets its
    # IO thread after fork); both then race from a barrier.
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(2)
    plan = [[(0, 0, 10), (5, 0, 11), (10, 0, 12)], [(0, 1, 20), (5, 1, 21), (1, 1, 22)]]
    procs = [ctx.Process(target=_worker, args=(path, jobs, barrier)) for jobs in plan]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    store = ArrayStore(path)
    assert store.done_jobs(RUN, LAYER) == {(e, r) for jobs in plan for e, r, _ in jobs}
    for jobs in plan:
        for epoch, repeat, seed in jobs:
            got, want = store.read_job(RUN, LAYER, epoch, repeat), job_data(seed)
            np.testing.assert_array_equal(got["prototype"], want["prototype"])
            np.testing.assert_array_equal(got["trace"], want["trace"])
