"""`protoscope evolve` / `export` on a tiny study: the store, resume after a kill, errors."""

import numpy as np
import pytest
import torch

from protoscope import stages
from protoscope.cli import main
from protoscope.store import MetricsTable, open_store
from protoscope.store.arrays import ArrayStore
from protoscope.study import load_study
from conftest import tiny_study_dict

SYNTH = {"repeats": 2, "pool_size": 32, "cma_generations": 2, "adam_steps": 6, "adam_lr": 0.1,
         "batch_size": 64, "rf_samples": 8}


def _study(tmp_path, write_study, **synth):
    data = tiny_study_dict(tmp_path / "store")
    data["runs"] = [{"condition": "clrjit", "seed": 0}]
    data["defaults"]["epochs"] = 1
    data["layers"] = ["layer1", "layer2"]
    data["synth"] = dict(SYNTH, **synth)
    return write_study(data)


class Killed(Exception):
    pass


def test_evolve_fills_the_store_and_resumes_after_a_kill(tmp_path, write_study, monkeypatch):
    path = _study(tmp_path, write_study)
    study = load_study(path)
    stages.train(study)

    import protoscope.synth.layer as layer  # where the stage (and protoscope.prototypes) call the engine

    real, calls = layer.synthesize, []

    def dies_on_third_job(forward, generator, objective, **kwargs):
        calls.append((objective.rows, kwargs["seed"]))  # (units: which layer, seed: which repeat)
        if len(calls) == 3:
            raise Killed
        return real(forward, generator, objective, **kwargs)

    monkeypatch.setattr(layer, "synthesize", dies_on_third_job)
    with pytest.raises(Killed):
        stages.evolve(study)
    store = ArrayStore(study.store / "arrays.zarr")
    # jobs run epoch by epoch, layer by layer: epoch 0's two layer1 repeats, then layer2 (8 units) repeat 0
    seed = study.synth.seed  # repeat r uses seed + r
    assert calls == [(4, seed), (4, seed + 1), (8, seed)]
    assert store.done_jobs("clrjit-s0", "layer1") == {(0, 0), (0, 1)}
    assert not store.is_done("clrjit-s0", "layer1", 1, 0)  # a job never reached is not marked done
    assert not store.is_done("clrjit-s0", "layer2", 0, 0)  # nor is the killed one
    assert store.done_jobs("clrjit-s0", "layer2") == set()
    monkeypatch.setattr(layer, "synthesize", real)
    assert stages.evolve(study) == 2 * 2 * 2 - 2  # only what was missing

    tree = open_store(study.store / "arrays.zarr")
    ds = tree["runs/clrjit-s0/layer2"].ds
    units = 8  # width 0.0625: layer2 has 8 channels
    assert ds.prototype.dims == ("epoch", "repeat", "unit", "y", "x", "rgb")
    assert ds.prototype.shape == (2, 2, units, 16, 16, 3) and ds.prototype.dtype == np.uint8
    assert ds.score.shape == (2, 2, units) and ds.score.dtype == np.float32
    assert ds.latent.dims == ("epoch", "repeat", "unit", "dim") and ds.silent.dtype == bool
    assert ds.trace.shape[-1] == SYNTH["adam_steps"] and ds.rf_mask.dims == ("epoch", "y", "x")
    assert list(ds.epoch.values) == [0, 1]
    assert float(ds.rf_mask.max()) == pytest.approx(1.0)
    # both repeats differ (independent seeds); prototypes are not blank
    first = ds.prototype.sel(epoch=1)
    assert not np.array_equal(first.sel(repeat=0).values, first.sel(repeat=1).values)
    assert first.values.std() > 5

    # determinism: the resumed store equals one computed without interruption (same checkpoints)
    fresh = load_study(path, {"store": str(tmp_path / "fresh")})
    import shutil

    shutil.copytree(study.store / "runs", fresh.store / "runs")
    assert stages.evolve(fresh) == 2 * 2 * 2
    again = open_store(fresh.store / "arrays.zarr")["runs/clrjit-s0/layer1"].ds
    np.testing.assert_array_equal(again.latent.values, open_store(study.store / "arrays.zarr")["runs/clrjit-s0/layer1"].ds.latent.values)
    for layer in study.layers:
        resumed = open_store(study.store / "arrays.zarr")[f"runs/clrjit-s0/{layer}"].ds
        uninterrupted = open_store(fresh.store / "arrays.zarr")[f"runs/clrjit-s0/{layer}"].ds
        assert bool(resumed.done.all()) and bool(uninterrupted.done.all())
        for name in ("prototype", "score", "latent", "trace", "silent", "rf_map", "rf_mask"):
            np.testing.assert_array_equal(resumed[name].values, uninterrupted[name].values, err_msg=f"{layer} {name}")

    metrics = MetricsTable(study.store).read("evolve")
    assert set(metrics["metric"]) == {"prototype_score", "silent_fraction"} and len(metrics) == 2 * 8

    figures = stages.report(study)
    names = {p.name for p in figures}
    assert {"prototypes_layer1.png", "development_layer2.png"} <= names
    grids = stages.export(study)
    assert len(grids) == 8 and all(p.stat().st_size > 100 for p in grids)


def test_missing_generator_weights_is_a_clear_error(tmp_path, write_study, capsys):
    path = _study(tmp_path, write_study, generator="deepsim-fc6",
                  generator_options={"weights_path": str(tmp_path / "nope" / "fc6.safetensors")})
    assert main(["run", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "fc6.safetensors" in err and "Traceback" not in err


def test_unknown_generator_lists_valid_ones(tmp_path, write_study, capsys):
    path = _study(tmp_path, write_study, generator="fourrier")
    assert main(["run", str(path)]) == 2
    assert "fourier" in capsys.readouterr().err


def test_evolve_from_flags_on_a_run_folder(tmp_path, write_study):
    """No study file: a run folder (with the run.yaml training wrote) and flags."""
    data = tiny_study_dict(tmp_path / "store")
    data["runs"] = [{"condition": "keepclr", "seed": 1}]
    data["defaults"]["epochs"] = 1
    stages.train(load_study(write_study(data)))
    run_dir = tmp_path / "store" / "runs" / "keepclr-s1"
    out = tmp_path / "protos"
    code = main(["evolve", "--run-dir", str(run_dir), "--layers", "layer1", "--epochs", "1", "--repeats", "1",
                 "--pool", "16", "--adam-steps", "2", "--adam-lr", "0.5", "--cma-generations", "1",
                 "--precision", "float32", "--rf", "none", "--store", str(out)])
    assert code == 0
    ds = open_store(out / "arrays.zarr")["runs/keepclr-s1/layer1"].ds
    assert list(ds.epoch.values) == [1] and ds.prototype.shape == (1, 1, 4, 16, 16, 3)
    assert ds.attrs["synth_adam_lr"] == 0.5 and ds.attrs["synth_rf"] == "none"
    assert "rf_map" not in ds or bool(ds.rf_map.isnull().all())  # --rf none: no receptive fields computed
    assert main(["evolve", "--run-dir", str(run_dir), "--rf", "pixel"]) == 2  # names the valid choices
    assert main(["evolve", "--run-dir", str(tmp_path / "nowhere")]) == 2
    assert main(["evolve", "--run-dir", str(run_dir), "--epochs", "one"]) == 2
