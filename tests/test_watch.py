"""`protoscope watch`: results of each checkpoint while the runs train, and at the end the same store
as the one made after training (`stages/watch.py`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import tiny_study_dict
from protoscope.errors import UserError
from protoscope.study import load_study

pytestmark = pytest.mark.timeout(600)


def _study(store: Path, runs: list[dict] | None = None) -> dict:
    """conftest's tiny study, 3 epochs of 128 images and every stage small: training two runs and
    every stage take about a minute on one core."""
    study = tiny_study_dict(
        store, name="watched", layers=["layer1"],
        runs=runs or [{"condition": "clrjit", "seed": 0}, {"condition": "clrjit", "seed": 1}],
        synth={"repeats": 1, "pool_size": 32, "cma_generations": 1, "adam_steps": 4, "rf_samples": 8,
               "natural_starts": 8},
        analyze={"spaces": ["pixel"], "distances": ["mse"]}, rsa={"images": 32},
        align={"images": 32, "mi_samples": 400, "sparse_iter": 50}, trust={"k": 4, "draws": 2})
    study["defaults"]["epochs"], study["defaults"]["data"]["epoch_size"] = 3, 128
    return study


def _write(tmp: Path, name: str, study: dict) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "protoscope.cli", *args]


ENV = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200")  # one thread: the same sums in every process


@pytest.mark.slow
def test_watching_while_training_gives_the_store_made_after_training(tmp_path):
    from protoscope.store.compare import differences, leftovers

    watched = _write(tmp_path, "watched", _study(tmp_path / "watched"))
    after = _write(tmp_path, "after", _study(tmp_path / "after"))
    watcher = subprocess.Popen(_cli("watch", str(watched), "--poll", "0.2", "--no-site"), env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    trainer = subprocess.run(_cli("train", str(watched)), env=ENV, capture_output=True, text=True)
    assert trainer.returncode == 0, trainer.stdout[-2000:] + trainer.stderr[-2000:]
    said, _ = watcher.communicate(timeout=500)
    assert watcher.returncode == 0, said[-3000:]
    rounds = [line for line in said.splitlines() if line.startswith("checkpoints complete:")]
    # results came while training went on: a round did jobs before every checkpoint was there
    early = [line for line in rounds if "jobs done" in line
             and any(a != b for a, b in re.findall(r"(\d+)/(\d+)", line.split(";")[0]))]
    assert early, said[-3000:]
    made = subprocess.run(_cli("run", str(after)), env=ENV, capture_output=True, text=True)
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    assert differences(tmp_path / "watched", tmp_path / "after") == []
    assert leftovers(tmp_path / "watched") == []


def test_a_run_folder_without_a_plan_is_refused(tmp_path):
    """watch must know the epochs a folder it does not train will have; the Checkpointer says so."""
    import protoscope
    from protoscope.nets.models import build_model
    from protoscope.stages.watch import look

    folder = tmp_path / "mine"
    model = build_model("resnet18", width=0.0625, small_input=True)
    protoscope.Checkpointer(folder, model).save(0)
    study = load_study(_write(tmp_path, "s", _study(tmp_path / "store", [{"name": "mine", "path": str(folder)}])))
    with pytest.raises(UserError, match="Checkpointer"):
        protoscope.stages.watch(study, site=False, sleep=lambda s: None)
    ckpt = protoscope.Checkpointer(folder, model, epochs=2)
    state = look(study, study.runs[0])
    assert state.planned == (0, 1, 2) and state.complete == {0} and not state.finished
    (folder / "epoch_001.safetensors").write_bytes(b"\x10\x00")  # a writer caught at its first bytes
    ckpt.save(2)
    state = look(study, study.runs[0])
    assert state.complete == {0, 2} and not state.finished
    ckpt.save(1)
    assert not look(study, study.runs[0]).finished  # every epoch, but no word that training is over
    ckpt.finish()
    assert look(study, study.runs[0]).finished


@pytest.mark.slow
def test_the_own_loop_example_is_watched_while_it_trains(tmp_path):
    """examples/watch_own_loop.py (a plain loop saving through protoscope.Checkpointer) in one
    process, `protoscope watch` of its study in another: each epoch's prototypes and probes."""
    from protoscope.store import MetricsTable
    from protoscope.store.arrays import ArrayStore

    root = Path(__file__).parents[1]
    study = yaml.safe_load((root / "examples" / "watch_own_loop.yaml").read_text())
    study["store"], study["runs"][0]["path"] = str(tmp_path / "store"), str(tmp_path / "run")
    path = _write(tmp_path, "own", study)
    watcher = subprocess.Popen(_cli("watch", str(path), "--poll", "0.2", "--no-site"), env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    loop = subprocess.run([sys.executable, str(root / "examples" / "watch_own_loop.py"), str(tmp_path / "run")],
                          env=ENV, capture_output=True, text=True)
    assert loop.returncode == 0, loop.stdout[-2000:] + loop.stderr[-2000:]
    said, _ = watcher.communicate(timeout=500)
    assert watcher.returncode == 0, said[-3000:]
    store = ArrayStore(tmp_path / "store" / "arrays.zarr")
    assert sorted(e for e, _ in store.done_jobs("own", "layer2")) == [0, 1, 2, 3]
    probe = MetricsTable(tmp_path / "store").read("probe")
    assert sorted(probe["epoch"].unique()) == [0, 1, 2, 3]
