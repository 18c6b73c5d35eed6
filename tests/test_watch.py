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

pytestmark = pytest.mark.timeout(600)  # no xdist group: these spread over the workers (`after` per worker)


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


@pytest.fixture(scope="module")
def after(tmp_path_factory) -> Path:
    """The store of the test study made after training (`protoscope run`): what a watch must end with."""
    folder = tmp_path_factory.mktemp("after")
    made = subprocess.run(_cli("run", str(_write(folder, "after", _study(folder / "store")))), env=ENV,
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    return folder / "store"


@pytest.mark.slow
def test_watching_while_training_gives_the_store_made_after_training(tmp_path, after):
    from protoscope.store.compare import differences, leftovers

    watched = _write(tmp_path, "watched", _study(tmp_path / "watched"))
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
    assert differences(tmp_path / "watched", after) == []  # the provisional store is gone, too
    assert leftovers(tmp_path / "watched") == []


@pytest.mark.slow
def test_on_ray_with_checkpoints_arriving_one_by_one_provisional_results_read_the_newest(tmp_path, after,
                                                                                         ray_cluster):
    """The jobs go to a local Ray cluster while the checkpoints of the after-the-fact store arrive one
    at a time, between looks. Each provisional refresh computes the whole-series results as if training
    had stopped at the newest epoch: tracking and RSA read it as the final one, the site says so, and
    no epoch beyond it is read. The end is the after-the-fact store."""
    import json
    import shutil

    from protoscope.executors import RayExecutor
    from protoscope.stages import watch
    from protoscope.store import MetricsTable
    from protoscope.store.compare import differences

    study = load_study(_write(tmp_path, "watched", _study(tmp_path / "watched")))
    arriving = []
    for run in study.runs:  # the run folders as training leaves them, but for the checkpoints
        source, target = after / "runs" / run.name, tmp_path / "watched" / "runs" / run.name
        target.mkdir(parents=True)
        for path in sorted(source.iterdir()):
            (arriving.append((path, target / path.name)) if path.name.startswith("epoch_")
             else shutil.copy2(path, target / path.name))
    shutil.copytree(after / "metrics" / "train", tmp_path / "watched" / "metrics" / "train")
    arriving.sort(key=lambda pair: pair[0].name)  # epoch by epoch, the runs side by side
    seen = []

    def between_looks(seconds):
        provisional = tmp_path / "watched" / "provisional"
        if (provisional / "PROVISIONAL.json").is_file():
            upto = json.loads((provisional / "PROVISIONAL.json").read_text())["through"]
            metrics = MetricsTable(provisional).read()
            site = (tmp_path / "watched" / "site" / "data" / "index.js").read_text()
            seen.append((upto, metrics, site))
        if arriving:
            shutil.copy2(*arriving.pop(0))

    watch(study, executor=RayExecutor(in_flight=2), poll=0, sleep=between_looks)
    watched = tmp_path / "watched"
    assert differences(watched, after) == [f"only in {watched}: site/data/live.js"]  # the watch's own status
    assert [upto["clrjit-s0"] for upto, _, _ in seen] == [1, 1, 2, 2, 3]  # a refresh per new checkpoint
    def vs_final(metrics):
        rows = metrics[(metrics["metric"] == "rsa_vs_final_pearson") & (metrics["run"] == "clrjit-s0")]
        return rows.groupby("epoch")["value"].mean()

    final = vs_final(MetricsTable(after).read())
    for upto, metrics, site in seen:
        last = upto["clrjit-s0"]
        assert metrics["epoch"].max() <= last and '"provisional": {"through"' in site
        provisional = vs_final(metrics)
        assert list(provisional.index) == list(range(last + 1))
        assert provisional[last] == pytest.approx(1.0)  # the newest epoch is the provisional final one ...
        if last < 3:
            assert final[last] < 0.999  # ... which it is not once training has ended


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


def test_provisional_results_read_the_complete_prefix_of_each_run(tmp_path):
    """`through` stops at the first epoch still missing (a later one may be complete first: another
    writer, a copy); `snapshot` is the study as if training had stopped there, without the epochs,
    spaces and pairs that do not exist yet."""
    from protoscope.stages.provisional import snapshot, through
    from protoscope.stages.watch import RunState

    runs = [{"condition": "clrjit", "seed": 0}, {"condition": "clrjit", "seed": 1}, {"condition": "keepclr", "seed": 0}]
    data = _study(tmp_path / "store", runs)
    data["analyze"]["spaces"] = ["pixel", {"run": "clrjit-s1"}, {"run": "clrjit-s0", "epoch": 3}]
    data["atlas"] = {"layers": ["layer1"], "epochs": [0, 2, 3], "together": [["clrjit-s0", "keepclr-s0"]]}
    study = load_study(_write(tmp_path, "s", data))
    states = {"clrjit-s0": RunState((0, 1, 2, 3), frozenset({0, 1, 3}), False),
              "clrjit-s1": RunState((0, 1, 2, 3), frozenset({0, 1, 2}), False),
              "keepclr-s0": RunState((0, 1, 2, 3), frozenset({0}), False)}
    upto = through(states)
    assert upto == {"clrjit-s0": 1, "clrjit-s1": 2}  # keepclr has one epoch: no series yet
    view = snapshot(study, upto)
    assert [(r.name, r.epochs) for r in view.runs] == [("clrjit-s0", 1), ("clrjit-s1", 2)]
    assert view.store == tmp_path / "store" / "provisional"
    assert [s if isinstance(s, str) else s.run for s in view.analyze.spaces] == ["pixel", "clrjit-s1"]
    assert view.atlas.epochs == [0] and view.atlas.together == [] and view.width is None


@pytest.mark.slow
def test_a_refresh_computes_again_only_what_new_epochs_make_stale(tmp_path, after):
    """Runs gain epochs in turns; after each turn the provisional store, kept from the refresh before,
    equals one computed afresh from the same epochs, and what the turn left as it was was not
    computed again."""
    import shutil

    from protoscope.stages import provisional
    from protoscope.stages.watch import RunState, live_round
    from protoscope.store.compare import differences

    store = tmp_path / "store"
    shutil.copytree(after / "runs", store / "runs")
    shutil.copytree(after / "metrics" / "train", store / "metrics" / "train")
    data = _study(store)  # with an atlas at named epochs: kept until epoch 2 comes within reach
    data["atlas"] = {"layers": ["layer1"], "epochs": [0, 2], "images": 64, "grid": 3, "adam_steps": 4, "pool_size": 16}
    study = load_study(_write(tmp_path, "s", data))

    def states(s0: int, s1: int) -> dict:
        return {name: RunState((0, 1, 2, 3), frozenset(range(k + 1)), False)
                for name, k in (("clrjit-s0", s0), ("clrjit-s1", s1))}

    kept = store / "provisional" / "rsa" / "clrjit-s0"
    for turn, (s0, s1) in enumerate([(1, 1), (2, 1), (2, 2)]):
        live_round(study, states(s0, s1))
        before = {p: p.stat().st_mtime_ns for p in kept.glob("*")} if kept.is_dir() else {}
        provisional.refresh(study, states(s0, s1))
        if turn == 2:  # only clrjit-s1 gained an epoch: clrjit-s0's RDMs were kept as they were
            assert before and before == {p: p.stat().st_mtime_ns for p in kept.glob("*")}
        elif turn:
            assert before != {p: p.stat().st_mtime_ns for p in kept.glob("*")}
        kept_store = tmp_path / f"kept{turn}"
        shutil.copytree(store / "provisional", kept_store, symlinks=True)
        shutil.rmtree(store / "provisional")  # afresh, from the same epochs
        provisional.refresh(study, states(s0, s1))
        found = [d for d in differences(kept_store, store / "provisional") if "PROVISIONAL.json" not in d]
        assert found == [], (turn, found)
