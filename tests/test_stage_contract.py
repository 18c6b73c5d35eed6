"""One contract for every stage, in the manner of scikit-learn's common estimator checks.

A tiny study (two seeds of one condition, one epoch, 16 px) runs every stage of the registry in
the order of the data flow, on one thread in a fresh process; the store as it stood before each
stage is kept, and each check starts from a copy of it:

- `plan` is deterministic and its jobs pickle (a worker on another machine gets them);
- `is_done` is false before `run` and true after, and a second `execute` changes nothing;
- the output of a pool of one-thread worker processes equals that one-thread run's, result by
  result (`store.compare.differences`): what `--executor processes` promises against `local`;
- `plan` and `prepare` record no settings: settings are written with the first result only;
- a `UserError` leaves the store byte-identical, and its message never names the command that
  was just run as the remedy.
"""

from __future__ import annotations

import hashlib
import pickle
import shutil
from pathlib import Path

import pytest
import yaml

from protoscope.errors import UserError
from protoscope.executors import LocalExecutor, ProcessExecutor
from protoscope.stages import execute
from protoscope.stages import STAGES
from protoscope.store.compare import differences
from protoscope.study import load_study

from conftest import tiny_study_dict

pytestmark = pytest.mark.xdist_group("stage_contract")  # one worker builds the chain once

ORDER = ("train", "probe", "evolve", "analyze", "activations", "rsa", "align", "trust", "tuning", "atlas", "width")
VERB = {"activations": "rsa"}  # the command that runs a stage, where it is not the stage's name


def contract_study_dict(store: Path) -> dict:
    """Every stage at its smallest: two seeds (so there is a pair to align), one epoch, two layers."""
    study = tiny_study_dict(store, device="cpu", layers=["layer1", "layer3"],
                            runs=[{"condition": "clrjit", "seed": 0}, {"condition": "clrjit", "seed": 1}])
    study["defaults"]["epochs"] = 1
    study["probe"] = {"train_size": 32, "test_size": 16, "adam_epochs": 2, "classifiers": ["logreg"]}
    study["synth"] = {"pool_size": 8, "adam_steps": 2, "cma_generations": 1, "rf_samples": 4, "repeats": 2}
    study["rsa"] = {"images": 24, "batch_size": 16}
    study["align"] = {"images": 24, "mi_samples": 200, "sparse_iter": 20, "penalties": [0.1, 0.01]}
    study["tuning"] = {"images": 8, "shuffles": 2, "orientations": 4, "frequencies": 3, "phases": 2,
                       "contrasts": [0.5, 1.0]}
    study["atlas"] = {"images": 32, "grid": 2, "min_count": 1, "adam_steps": 2, "pool_size": 4, "n_neighbors": 5}
    study["width"] = {"families": ["conv"], "widths": [4], "seeds": [0], "epochs": 1, "train_size": 50,
                      "test_size": 20}
    return study


def study_at(folder: Path, store: Path, **changes):
    """The contract study with its store at `store`; `changes` are dotted fields, e.g. rsa__images=30."""
    data = contract_study_dict(store)
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        node = data
        for key in path:
            node = node.setdefault(key, {})
        node[last] = value
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"study_{len(list(folder.glob('study_*.yaml')))}.yaml"
    file.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_study(file)


def fingerprint(store: Path) -> dict[str, str]:
    """Every folder and file of a store, with the hash of each file's bytes."""
    return {str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(store.rglob("*"))}


def settings_files(store: Path) -> set[str]:
    return {str(p.relative_to(store)) for p in store.rglob("_settings.json")}


@pytest.fixture(scope="module")
def pool():
    """Two one-thread worker processes, kept for the module: each imports torch (and compiles UMAP's
    kernels) once, not once per stage."""
    with ProcessExecutor(workers=2) as executor:
        yield executor


# The one-thread reference run: every stage in order in a fresh interpreter that starts with one
# thread (as a pool worker does), the store kept before and after each stage.
CHAIN = """
import shutil, sys
from pathlib import Path
from protoscope.executors import LocalExecutor
from protoscope.stages import STAGES, execute
from protoscope.study import load_study

root, study = Path(sys.argv[1]), load_study(sys.argv[2])
for name in sys.argv[3].split(","):
    before = root / f"before_{name}"
    if study.store.exists():
        shutil.copytree(study.store, before)
    else:
        before.mkdir()
    execute(STAGES[name], study, LocalExecutor())
    shutil.copytree(study.store, root / f"after_{name}")
"""


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """{stage: (store before it, store after it)}, every stage run in order on one thread in a fresh process."""
    import os
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("contract")
    study_at(root / "yaml", root / "store")
    done = subprocess.run([sys.executable, "-c", CHAIN, str(root), str(root / "yaml" / "study_0.yaml"), ",".join(ORDER)],
                          capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    yield root, {name: (root / f"before_{name}", root / f"after_{name}") for name in ORDER}


def copy_of(folder: Path, where: Path) -> Path:
    shutil.copytree(folder, where)
    return where


def test_the_registry_holds_every_stage_once():
    assert sorted(STAGES) == sorted(ORDER)
    assert all(stage.name == name for name, stage in STAGES.items())


@pytest.mark.parametrize("name", ORDER)
def test_plan_is_deterministic_and_its_jobs_pickle(name, chain, tmp_path):
    root, snapshots = chain
    study = study_at(tmp_path, copy_of(snapshots[name][0], tmp_path / "store"))
    stage = STAGES[name]
    jobs = stage.plan(study, None)
    assert jobs, f"{name} plans nothing for the contract study"
    assert stage.plan(study, None) == jobs
    assert pickle.loads(pickle.dumps(jobs)) == jobs
    assert pickle.loads(pickle.dumps(study)) == study


@pytest.mark.parametrize("name", ORDER)
def test_a_pool_of_one_thread_workers_gives_this_process_result_and_a_rerun_does_nothing(name, chain, pool, tmp_path):
    root, snapshots = chain
    store = copy_of(snapshots[name][0], tmp_path / "store")
    study, stage = study_at(tmp_path, store), STAGES[name]
    jobs = stage.plan(study, None)
    stage.prepare(study, jobs)
    assert not any(stage.is_done(study, job) for job in jobs), "done before it ran"
    outcome = execute(stage, study, pool)
    assert outcome.done_now == len(jobs)
    assert all(stage.is_done(study, job) for job in jobs)
    assert differences(snapshots[name][1], store) == []
    stored = fingerprint(store)
    again = execute(stage, study, LocalExecutor())
    assert again.done_now == 0 and len(again.skipped) == len(jobs)
    assert fingerprint(store) == stored


@pytest.mark.parametrize("name", ORDER)
def test_settings_are_recorded_with_the_first_result_only(name, chain, tmp_path):
    root, snapshots = chain
    store = copy_of(snapshots[name][0], tmp_path / "store")
    study, stage = study_at(tmp_path, store), STAGES[name]
    before = settings_files(store)
    stage.prepare(study, stage.plan(study, None))
    assert settings_files(store) == before, "settings recorded before any result"


# (stage, where it starts: the store before or after the stage, changed fields, words the error names)
FAILURES = [
    ("train", "after", {"defaults__optimizer__lr": 0.1}, "lr"),
    ("probe", "after", {"probe__adam_epochs": 3}, "adam_epochs"),
    ("evolve", "after", {"synth__pool_size": 9}, "pool_size"),
    ("evolve", "before", {"synth__epochs": [0, 7]}, "[7]"),
    ("analyze", "after", {"analyze__exclude_silent": False}, "exclude_silent"),
    ("activations", "after", {"rsa__images": 28}, "images"),
    ("activations", "before", {"rsa__epochs": [5]}, "[5]"),
    ("rsa", "after", {"rsa__distance": "euclidean"}, "distance"),
    ("align", "after", {"align__threshold": 0.4}, "threshold"),
    ("trust", "after", {"trust__k": 4}, "k"),
    ("tuning", "after", {"tuning__hues": 16}, "hues"),
    ("tuning", "before", {"tuning__epochs": [6]}, "[6]"),
    ("atlas", "after", {"atlas__grid": 3}, "grid"),
    ("atlas", "before", {"atlas__epochs": [9]}, "[9]"),
    ("width", "after", {"width__epochs": 2}, "epochs"),
]


@pytest.mark.parametrize("name,start,changes,named", FAILURES,
                         ids=[f"{f[0]}-{f[1]}-{next(iter(f[2]))}" for f in FAILURES])
def test_a_user_error_leaves_the_store_as_it_was(name, start, changes, named, chain, tmp_path):
    root, snapshots = chain
    store = copy_of(snapshots[name][0 if start == "before" else 1], tmp_path / "store")
    study = study_at(tmp_path, store, **changes)
    stored = fingerprint(store)
    with pytest.raises(UserError) as error:
        execute(STAGES[name], study, LocalExecutor())
    assert named in str(error.value)
    assert f"protoscope {VERB.get(name, name)}" not in str(error.value), str(error.value)
    assert fingerprint(store) == stored


READ_CHECKPOINTS = ("probe", "evolve", "activations", "rsa", "align", "tuning", "atlas")


@pytest.mark.parametrize("name", READ_CHECKPOINTS)
def test_a_run_whose_checkpoints_are_not_found_is_named_with_its_folder(name, chain, tmp_path):
    """File names protoscope does not read (a FAIR-style checkpoint_0010.pth.tar): every stage says so the
    same way, naming the folder and the names it reads."""
    root, snapshots = chain
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "checkpoint_0010.pth.tar").write_bytes(b"theirs")
    store = copy_of(snapshots[name][0], tmp_path / "store")
    data = contract_study_dict(store)
    data["runs"].append({"name": "theirs", "path": str(theirs)})
    file = tmp_path / "study.yaml"
    file.write_text(yaml.safe_dump(data, sort_keys=False))
    study, stored = load_study(file), fingerprint(store)
    with pytest.raises(UserError) as error:
        execute(STAGES[name], study, LocalExecutor(), ["theirs"])
    message = str(error.value)
    assert "'theirs'" in message and str(theirs) in message and "epoch_<n>" in message, message
    assert f"protoscope {VERB.get(name, name)}" not in message, message
    assert fingerprint(store) == stored


def test_analyze_refuses_masks_without_receptive_fields_and_then_takes_the_advice(chain, tmp_path):
    """analyze.masked with prototypes evolved under synth.rf: none is refused; following the error's
    advice (analyze.masked: false) must then work, not meet "settings changed"."""
    root, snapshots = chain
    store = copy_of(snapshots["evolve"][0], tmp_path / "store")
    study = study_at(tmp_path, store, synth__rf="none", synth__repeats=1)
    execute(STAGES["evolve"], study, LocalExecutor(), ["clrjit-s0"])
    stored = fingerprint(store)
    with pytest.raises(UserError, match="analyze.masked: false"):
        execute(STAGES["analyze"], study, LocalExecutor(), ["clrjit-s0"])
    assert fingerprint(store) == stored
    advised = study_at(tmp_path, store, synth__rf="none", synth__repeats=1, analyze__masked=False)
    assert execute(STAGES["analyze"], advised, LocalExecutor(), ["clrjit-s0"]).done_now > 0


def test_a_truncated_image_stops_the_stage_before_it_writes(chain, tmp_path):
    """An image folder with one truncated PNG: one line naming the file, and nothing written."""
    from PIL import Image

    root, snapshots = chain
    folder = tmp_path / "images"
    for c, colour in enumerate(("red", "blue")):
        (folder / f"class{c}").mkdir(parents=True)
        for i in range(12):
            Image.new("RGB", (16, 16), colour).save(folder / f"class{c}" / f"{i}.png")
    broken = folder / "class1" / "11.png"
    broken.write_bytes(broken.read_bytes()[:40])
    store = copy_of(snapshots["activations"][0], tmp_path / "store")
    study = study_at(tmp_path, store, rsa__data={"name": "imagefolder", "root": str(folder), "image_size": 16})
    stored = fingerprint(store)
    with pytest.raises(UserError) as error:
        execute(STAGES["activations"], study, LocalExecutor())
    assert "11.png" in str(error.value)
    assert fingerprint(store) == stored


def test_a_layer_the_architecture_lacks_is_refused_before_anything_trains(tmp_path):
    """Every layer the study names (and the probe's, defaulted per family) is checked when training is
    planned, for each architecture the runs train: not after an hour of training."""
    data = contract_study_dict(tmp_path / "store")
    data["defaults"].update(arch="alexnet", width=1.0, small_input=False)
    data["layers"] = ["features.3"]
    data["rsa"]["layers"] = ["features.99"]
    file = tmp_path / "study.yaml"
    file.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(UserError, match="features.99"):
        STAGES["train"].plan(load_study(file), None)
    assert not (tmp_path / "store").exists()
    data["rsa"]["layers"] = ["features.8"]
    file.write_text(yaml.safe_dump(data, sort_keys=False))
    assert STAGES["train"].plan(load_study(file), None)  # alexnet's probe layer: where its classifier was
