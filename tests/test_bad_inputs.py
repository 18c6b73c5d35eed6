"""The mistakes a researcher really makes, fed to the CLI (issue #14, item 5).

For every one: exit code 2, one line on stderr that starts with ``error:`` and names the file or
the field, no traceback, and the store — and every run folder — byte for byte as it was (every
file hashed before and after; a new empty folder counts as a change too).

One tiny study is built once for the module (a trained run, probes, prototypes, RSA, and a folder
of user checkpoints `ckpts/mine` the study does not list yet); each test works on its own copy.
Paths in the study are relative to it, so a copy is a complete, independent workspace.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import tiny_study_dict
from protoscope import stages
from protoscope.cli import main
from protoscope.nets.checkpoints import checkpoint_name, load_state, save_state
from protoscope.nets.models import build_model
from protoscope.store import MetricsTable
from protoscope.study import load_study

ARCH = {"arch": "resnet18", "width": 0.0625, "small_input": True}
MINE = {"name": "mine", "path": "ckpts/mine"}  # user checkpoints, two epochs of random weights


def tree_hashes(root: Path) -> dict[str, str]:
    """Every file under `root` (relative path -> sha256) and every folder (-> '<dir>')."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            found[os.path.relpath(os.path.join(folder, name), root)] = "<dir>"
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return found


def changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


# --------------------------------------------------------------------------- the workspace


def _study_dict() -> dict:
    data = tiny_study_dict("store")  # relative: the study file's folder
    data.update(device="cpu", layers=["layer1"])
    data["defaults"]["epochs"] = 1
    data["runs"] = [{"condition": "clrjit", "seed": 0}]
    data["probe"] = {"train_size": 32, "test_size": 16, "classifiers": ["logreg"]}
    data["synth"] = {"repeats": 1, "pool_size": 8, "cma_generations": 0, "adam_steps": 2, "rf_samples": 4}
    data["rsa"] = {"images": 8, "compare": ["pearson"]}
    data["align"] = {"images": 8, "mi_samples": 0, "penalties": [0.1], "sparse_iter": 10}
    return data


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """train + probe + evolve + rsa of a one-run, one-epoch study, and user checkpoints beside it."""
    root = tmp_path_factory.mktemp("base")
    (root / "study.yaml").write_text(yaml.safe_dump(_study_dict(), sort_keys=False))
    for epoch in range(2):
        torch.manual_seed(epoch)
        save_state(root / "ckpts" / "mine" / checkpoint_name(epoch), build_model(**ARCH).state_dict())
    study = load_study(root / "study.yaml")
    stages.train(study)
    stages.probe(study)
    stages.evolve(study)
    stages.rsa(study)  # the library call: the CLI's figures are not needed here
    return root


class Workspace:
    def __init__(self, root: Path):
        self.root = root
        self.study = root / "study.yaml"
        self.store = root / "store"
        self.mine = root / "ckpts" / "mine"

    def edit(self, change) -> Path:
        """Apply `change(study_dict)` to the study file; returns its path."""
        data = yaml.safe_load(self.study.read_text())
        change(data)
        self.study.write_text(yaml.safe_dump(data, sort_keys=False))
        return self.study

    def add_mine(self, **overrides) -> Path:
        return self.edit(lambda s: s["runs"].append(dict(MINE, **overrides)))

    def forget(self, *parts: str) -> None:
        """A store where these parts were never computed (e.g. probe results)."""
        for part in parts:
            shutil.rmtree(self.store / part)


@pytest.fixture
def ws(base, tmp_path) -> Workspace:
    shutil.copytree(base, tmp_path / "w")
    return Workspace(tmp_path / "w")


def refused(capsys, ws: Workspace, argv: list[str], *named: str) -> str:
    """Run the CLI on a bad input: exit 2, one `error:` line naming `named`, nothing written."""
    capsys.readouterr()
    before = tree_hashes(ws.root)
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    after = tree_hashes(ws.root)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit {code}: {err}"
    assert "Traceback" not in out + err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for name in named:
        assert str(name) in lines[0], f"{name!r} not named in: {lines[0]}"
    assert changes(before, after) == [], "the store or a run folder changed"
    print(f"\n{argv[0]}: {lines[0]}")  # pytest -s shows what a user sees
    return lines[0]


# --------------------------------------------------------------------------- checkpoints


def test_missing_checkpoint_folder(ws, capsys):
    study = ws.add_mine(path="ckpts/elsewhere")
    refused(capsys, ws, ["probe", study, "--run", "mine"], ws.root / "ckpts" / "elsewhere", "'mine'")


def test_truncated_checkpoint(ws, capsys):
    study = ws.add_mine()
    path = ws.mine / "epoch_000.safetensors"
    path.write_bytes(path.read_bytes()[:5000])  # a copy that stopped half way
    refused(capsys, ws, ["probe", study, "--run", "mine"], path, "Corrupt")


def test_corrupt_pt_checkpoint_is_not_mistaken_for_a_pickled_object(ws, capsys):
    study = ws.add_mine()
    (ws.mine / "epoch_000.safetensors").unlink()
    path = ws.mine / "epoch_000.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    line = refused(capsys, ws, ["probe", study, "--run", "mine"], path, "Corrupt")
    assert "pickled" not in line


def test_git_lfs_pointer_instead_of_the_checkpoint(ws, capsys):
    study = ws.add_mine()
    path = ws.mine / "epoch_000.safetensors"
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "ab" * 32 + "\nsize 189760\n")
    refused(capsys, ws, ["probe", study, "--run", "mine"], path, "Git LFS pointer")


def test_checkpoint_of_another_width(ws, capsys):
    study = ws.add_mine()
    path = ws.mine / "epoch_000.safetensors"
    save_state(path, build_model("resnet18", width=0.125, small_input=True).state_dict())
    refused(capsys, ws, ["probe", study, "--run", "mine"], path, "does not fit", "wrong shape")


def test_checkpoint_of_another_architecture(ws, capsys):
    from torchvision.models import squeezenet1_1

    study = ws.add_mine()
    (ws.mine / "epoch_000.safetensors").unlink()
    path = ws.mine / "epoch_000.pt"
    torch.save(squeezenet1_1().state_dict(), path)
    refused(capsys, ws, ["probe", study, "--run", "mine"], path, "does not fit", "missing")


def test_pickled_object_in_a_pt_is_refused_but_the_command_line_beside_the_weights_is_not(ws, capsys):
    study = ws.add_mine()
    (ws.mine / "epoch_000.safetensors").unlink()
    path = ws.mine / "epoch_000.pt"
    weights = build_model(**ARCH).state_dict()
    torch.save({"state_dict": weights, "args": argparse.Namespace(lr=0.1), "out": Path("/tmp/run")}, path)
    refused(capsys, ws, ["probe", study, "--run", "mine"], path, "Refused", "pathlib")
    # what training scripts save: the weights next to the parsed command line (#27: allowed)
    torch.save({"state_dict": weights, "args": argparse.Namespace(lr=0.1)}, path)
    assert main(["probe", str(study), "--run", "mine"]) == 0


@pytest.mark.parametrize("verb", ["probe", "evolve", "rsa"])
def test_nan_weights(ws, capsys, verb):
    study = ws.add_mine()
    path = ws.mine / "epoch_000.safetensors"
    state = load_state(path)
    state["layer1.0.conv1.weight"][0, 0, 0, 0] = float("nan")  # a run that diverged
    save_state(path, state)
    refused(capsys, ws, [verb, study, "--run", "mine"], path, "NaN", "layer1.0.conv1.weight")


# --------------------------------------------------------------------------- layers, epochs, runs


@pytest.mark.parametrize("verb, change, flags, wrong", [
    ("evolve", lambda s: s.update(layers=["layer5"]), [], "layer5"),
    ("evolve", lambda s: None, ["--layers", "layer1,layr2"], "layr2"),
    ("rsa", lambda s: s.update(layers=["layer5"]), [], "layer5"),
    ("probe", lambda s: s["probe"].update(layer="layer9"), [], "layer9"),  # not "the probe settings changed"
], ids=["study-layers", "layers-flag", "rsa", "probe-layer"])
def test_unknown_layer_lists_the_valid_ones(ws, capsys, verb, change, flags, wrong):
    line = refused(capsys, ws, [verb, ws.edit(change), *flags], f"Unknown layer '{wrong}'", "Valid choices")
    assert "layer4" in line and "layer1.0.conv1" in line


@pytest.mark.parametrize("verb, change, flags, named", [
    ("evolve", lambda s: None, ["--epochs", "0,7"], ["[7]", "--epochs"]),
    ("rsa", lambda s: s["rsa"].update(epochs=[0, 5]), [], ["[5]", "rsa.epochs"]),
    ("align", lambda s: (s["runs"].append(MINE), s["align"].update(pairs=[["clrjit-s0", "mine"]], epochs=[4])),
     [], ["align.epochs", "[4]"]),
    ("analyze", lambda s: (s["runs"].append(MINE), s.update(analyze={"spaces": [{"run": "mine", "epoch": 9}]})),
     [], ["'mine'", "epoch 9"]),
], ids=["evolve", "rsa", "align", "analyze-space"])
def test_epochs_that_do_not_exist(ws, capsys, verb, change, flags, named):
    refused(capsys, ws, [verb, ws.edit(change), *flags], *named)


def test_an_alignment_that_cannot_fit_its_memory_budget_is_refused_before_any_work(ws, capsys):
    study = ws.edit(lambda s: (s["runs"].append(MINE), s["align"].update(pairs=[["clrjit-s0", "mine"]],
                                                                        mi_samples=100000, memory_gb=0.01)))
    refused(capsys, ws, ["align", study], "align at layer", "GiB", "memory_gb=0.01", "mi_samples")
    assert not (ws.root / "store" / "metrics").exists() or not list((ws.root / "store" / "metrics").glob("align*"))


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", "x~y"])
def test_run_name_that_is_not_a_path_component(ws, capsys, name):
    study = ws.edit(lambda s: s["runs"].append({"name": name, "seed": 1}))
    refused(capsys, ws, ["train", study], study, "runs[1].name", repr(name))
    assert not (ws.root / "store" / "escape").exists() and not (ws.root / "escape").exists()


def test_two_runs_with_the_same_name(ws, capsys):
    study = ws.edit(lambda s: s["runs"].append({"condition": "keepclr", "seed": 0, "name": "clrjit-s0"}))
    refused(capsys, ws, ["train", study], study, "runs:", "unique", "clrjit-s0")


def test_unknown_run(ws, capsys):
    refused(capsys, ws, ["probe", ws.study, "--run", "clrjit-s1"], "'clrjit-s1'", "Runs: clrjit-s0")


def test_unknown_architecture_writes_no_run_folder(ws, capsys):
    study = ws.edit(lambda s: s["runs"].append({"name": "big", "arch": "resnet81"}))
    refused(capsys, ws, ["train", study, "--run", "big"], study, "runs[1].arch", "resnet81", "'resnet18'")


# --------------------------------------------------------------------------- data


def _images(folder: Path, classes: list[str], n: int = 3) -> None:
    for c, name in enumerate(classes):
        (folder / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (20, 20 + i), (60 * c, 40 * i, 200)).save(folder / name / f"{i}.png")


def _probe_on(ws: Workspace, root: str) -> Path:
    ws.forget("metrics/probe")  # probes not run yet: the first probe reads the folder
    return ws.edit(lambda s: s["probe"].update(data={"name": "imagefolder", "root": root, "image_size": 16}))


def test_empty_image_folder(ws, capsys):
    (ws.root / "imgs" / "train").mkdir(parents=True)
    refused(capsys, ws, ["probe", _probe_on(ws, "imgs")], ws.root / "imgs", "imagefolder")


def test_image_folder_whose_class_has_no_images(ws, capsys):
    (ws.root / "imgs" / "cat").mkdir(parents=True)
    refused(capsys, ws, ["probe", _probe_on(ws, "imgs")], ws.root / "imgs", "cat")


def test_one_class_image_folder_for_probes(ws, capsys):
    _images(ws.root / "imgs", ["cat"])
    refused(capsys, ws, ["probe", _probe_on(ws, "imgs")], ws.root / "imgs", "single class", "'cat'", "probe.data")


def test_one_class_image_folder_for_rsa(ws, capsys):
    _images(ws.root / "imgs", ["cat"], n=8)
    ws.forget("metrics/rsa", "rsa", "activations.zarr")  # RSA not run yet
    study = ws.edit(lambda s: s["rsa"].update(data={"name": "imagefolder", "root": "imgs", "image_size": 16}))
    refused(capsys, ws, ["rsa", study], "single category", "'cat'", "rsa.data")


def test_unreadable_image_names_the_file(ws, capsys):
    _images(ws.root / "imgs", ["cat", "dog"])
    bad = ws.root / "imgs" / "dog" / "1.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a PNG signature, then nothing
    refused(capsys, ws, ["probe", _probe_on(ws, "imgs")], bad)


def test_unreadable_image_while_training_in_a_worker(ws, capsys):
    """Training reads images in a worker process: the line names the file (not the worker's traceback), and
    what the new run holds is what it had written before its first step: its run.yaml and initialization."""
    _images(ws.root / "imgs", ["cat", "dog"], n=4)
    bad = ws.root / "imgs" / "dog" / "2.png"
    bad.write_bytes(b"not an image")
    study = ws.edit(lambda s: (s.update(workers=1), s["runs"].append({
        "name": "img", "data": {"name": "imagefolder", "root": "imgs", "image_size": 16},
        "optimizer": {"lr": 0.05, "batch_size": 4}})))
    capsys.readouterr()
    before = tree_hashes(ws.root)
    code = main(["train", str(study), "--run", "img"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: Cannot read image {bad}:"), lines
    assert "Traceback" not in lines[0] and "worker" not in lines[0]
    assert changes(before, tree_hashes(ws.root)) == [
        "store/runs/img", "store/runs/img/epoch_000.safetensors", "store/runs/img/run.yaml"]
    print(f"\ntrain: {lines[0]}")


def test_images_of_mixed_sizes_and_modes_are_accepted(ws, capsys):
    """A researcher's folder: greyscale, RGBA, 16-bit, palette, CMYK, every size. All load as RGB at the
    study's size; 16-bit values are scaled to 8 bits (40000/65535 -> 156), not clipped to white."""
    from protoscope.data.datasets import labelled
    from protoscope.study import DataSpec

    root = ws.root / "imgs"
    for name in ("a", "b"):
        folder = root / name
        folder.mkdir(parents=True)
        Image.new("L", (20, 24), 90).save(folder / "0_grey.png")
        Image.fromarray(np.full((18, 30), 40000, np.uint16)).save(folder / "1_deep.png")
        Image.new("RGBA", (30, 16), (255, 0, 0, 0)).save(folder / "2_rgba.png")
        Image.new("P", (16, 16), 3).save(folder / "3_palette.png")
        Image.new("CMYK", (40, 12), (0, 255, 0, 0)).save(folder / "4_cmyk.jpg")
        Image.new("RGB", (64, 48), (0, 0, 255)).save(folder / "5_big.jpg")
    assert Image.open(root / "a" / "1_deep.png").mode.startswith("I")
    images = labelled(DataSpec(name="imagefolder", root=root, image_size=16), "train")
    assert images.images.shape == (12, 3, 16, 16) and images.images.dtype == torch.uint8
    centre = images.images[:6, :, 8, 8].tolist()
    assert centre[0] == [90, 90, 90] and centre[1] == [156, 156, 156] and centre[2] == [255, 0, 0]
    assert abs(centre[4][0] - 255) <= 2 and centre[4][1] <= 2 and centre[5][2] >= 250
    capsys.readouterr()
    assert main(["probe", str(_probe_on(ws, "imgs"))]) == 0, capsys.readouterr().err
    assert MetricsTable(ws.store).has("probe", "clrjit-s0/epoch_001")


# --------------------------------------------------------------------------- the study file


@pytest.mark.parametrize("change, field", [
    (lambda s: s["synth"].update(adam_step=3), "synth.adam_step"),
    (lambda s: s.update(layer=["layer1"]), "layer:"),
    (lambda s: s["defaults"]["data"].update(imagesize=32), "defaults.data.imagesize"),
])
def test_study_typo_names_the_field(ws, capsys, change, field):
    study = ws.edit(change)
    refused(capsys, ws, ["evolve", study], study, field, "Extra inputs are not permitted")


def test_store_that_is_a_file(ws, capsys):
    """`store:` names an existing file: refused when the study loads, not by a traceback half way into training."""
    (ws.root / "results.csv").write_text("epoch,acc\n")
    study = ws.edit(lambda s: s.update(store="results.csv"))
    refused(capsys, ws, ["train", study], study, "store:", ws.root / "results.csv")


def test_store_inside_a_file(ws, capsys):
    (ws.root / "results.csv").write_text("epoch,acc\n")
    refused(capsys, ws, ["train", ws.study, "--store", ws.root / "results.csv" / "store"], "store:", ws.root / "results.csv")


def test_empty_layer_list(ws, capsys):
    """`layers: []` would train and probe, then fail at the first stage that reads a layer."""
    study = ws.edit(lambda s: s.update(layers=[]))
    refused(capsys, ws, ["run", study], study, "layers:", "at least one layer")


def test_empty_layers_flag(ws, capsys):
    refused(capsys, ws, ["evolve", ws.study, "--layers", ","], "layers:", "at least one layer")


def test_yaml_syntax_error_is_one_line_with_its_position(ws, capsys):
    with open(ws.study, "a") as f:
        f.write("layers: [layer1\n")
    refused(capsys, ws, ["probe", ws.study], ws.study, "not valid YAML at line")


def test_missing_study_file(ws, capsys):
    refused(capsys, ws, ["probe", ws.root / "stduy.yaml"], ws.root / "stduy.yaml")


# --------------------------------------------------------------------------- stores of other studies and settings


@pytest.mark.parametrize("verb, change, named", [
    ("train", lambda s: s["defaults"]["optimizer"].update(lr=0.1), ["runs/clrjit-s0", "(optimizer)"]),
    ("probe", lambda s: s["probe"].update(train_size=48), ["metrics/probe", "probe.train_size: stored 32, now 48"]),
    ("rsa", lambda s: s["rsa"].update(images=12), ["metrics/rsa", "rsa.images: stored 8, now 12"]),
    ("evolve", lambda s: s["synth"].update(pool_size=16), ["arrays.zarr", "synth_pool_size: stored 8, now 16"]),
], ids=["train", "probe", "rsa", "evolve"])
def test_store_computed_with_other_settings(ws, capsys, verb, change, named):
    refused(capsys, ws, [verb, ws.edit(change)], *named)


def test_store_written_by_another_study(ws, capsys):
    """Another study file pointed at the same store, with a run of the same name trained otherwise."""
    other = ws.root / "other.yaml"
    data = _study_dict()
    data["name"] = "other"
    data["runs"] = [{"name": "clrjit-s0", "condition": "keepclr", "seed": 3}]
    other.write_text(yaml.safe_dump(data, sort_keys=False))
    refused(capsys, ws, ["train", other], ws.store / "runs" / "clrjit-s0", "condition", "seed")


# --------------------------------------------------------------------------- the disk


def _read_only_copy(base: Path) -> Path:
    """A copy the test user can read but not write (world-readable folders, so a dropped uid reads it)."""
    root = Path(tempfile.mkdtemp(prefix="protoscope-ro-"))
    shutil.copytree(base, root / "w")
    (root / "w" / "study.yaml").write_text(yaml.safe_dump(
        dict(yaml.safe_load((root / "w" / "study.yaml").read_text()), runs=[{"condition": "clrjit", "seed": 0}, MINE]),
        sort_keys=False))
    for folder, dirs, files in os.walk(root):
        os.chmod(folder, 0o555)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o444)
    return root


@pytest.mark.parametrize("verb", ["probe", "evolve"])  # a metrics file (atomic write), a Zarr group
def test_read_only_store(base, capsys, verb):
    root = _read_only_copy(base)
    ws = Workspace(root / "w")
    as_root = os.geteuid() == 0  # root writes anywhere: drop to nobody for the command
    try:
        if as_root:
            if any(not os.stat(folder).st_mode & 0o001 for folder in root.parents):
                pytest.skip(f"{root.parent} is not traversable by other users: nobody could read the copy")
            try:
                os.seteuid(65534)
            except PermissionError:
                pytest.skip("running as root without CAP_SETUID: cannot make a store read-only")
        try:
            refused(capsys, ws, [verb, ws.study, "--run", "mine"], ws.store, "Permission denied")
        finally:
            if as_root:
                os.seteuid(0)
    finally:
        for folder, _, _ in os.walk(root):
            os.chmod(folder, 0o755)
        shutil.rmtree(root)


def test_full_disk_leaves_nothing_half_written(ws, capsys, monkeypatch):
    """The disk fills while a probe result is written: one line naming the file, no temporary file,
    no new folder, and the next run (with space) does the work."""
    import pandas as pd

    real = pd.DataFrame.to_parquet

    def full(self, path, *args, **kwargs):
        Path(path).write_bytes(b"PAR1" + b"\0" * 64)  # half a file, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    study = ws.add_mine()
    target = ws.store / "metrics" / "probe" / "mine" / "epoch_000.parquet"
    refused(capsys, ws, ["probe", study, "--run", "mine"], target, "No space left on device")
    monkeypatch.setattr(pd.DataFrame, "to_parquet", real)
    assert main(["probe", str(study), "--run", "mine"]) == 0
    assert target.is_file()


# --------------------------------------------------------------------------- analyses that cannot be done


def test_constant_output_layer_in_rsa(ws, capsys):
    """A checkpoint whose layer1 answers every image alike (its stem's weights are all zero)."""
    for epoch in range(2):
        path = ws.mine / checkpoint_name(epoch)
        state = load_state(path)
        state["conv1.weight"].zero_()
        save_state(path, state)
    study = ws.add_mine()
    # the first call stores the (valid) activations, which alignment reuses, then stops at the RDMs
    before = tree_hashes(ws.root)
    assert main(["rsa", str(study), "--run", "mine"]) == 2
    assert all(p.startswith("store/activations.zarr/runs/mine") for p in changes(before, tree_hashes(ws.root)))
    first = capsys.readouterr().err.strip()
    # the same command again: the same one line, and now nothing at all changes
    assert refused(capsys, ws, ["rsa", study, "--run", "mine"], "mine/layer1 epoch 0") == first


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize("verb, device, named", [
    ("probe", "gpu", "Unknown device 'gpu'"),
    ("probe", "meta", "Unknown device 'meta'"),
    ("probe", "cuda:99", "'cuda:99'"),
    ("analyze", "gpu", "Unknown device 'gpu'"),  # used to record its settings first
])
def test_wrong_device(ws, capsys, verb, device, named):
    refused(capsys, ws, [verb, ws.study, "--device", device], named)


@pytest.mark.parametrize("flags, named", [
    (["--rf", "bogus"], ["synth.rf", "'layer', 'unit' or 'none'"]),
    (["--precision", "fp8"], ["precision", "'auto', 'bf16' or 'float32'"]),
    (["--generator", "bogus"], ["'bogus'", "fourier"]),
    (["--epochs", "last"], ["--epochs", "'last'"]),
], ids=["rf", "precision", "generator", "epochs"])
def test_unknown_stage_option_value(ws, capsys, flags, named):
    refused(capsys, ws, ["evolve", ws.study, *flags], *named)


def test_the_installed_command_prints_one_line(ws):
    """The same contract through a real process (the console script's `main`): stderr is one line."""
    study = ws.add_mine()
    path = ws.mine / "epoch_001.safetensors"
    path.write_bytes(b"\x00garbage")
    before = tree_hashes(ws.root)
    proc = subprocess.run([sys.executable, "-m", "protoscope.cli", "evolve", str(study), "--run", "mine",
                           "--epochs", "1"], capture_output=True, text=True, env=dict(os.environ, COLUMNS="80"))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0], proc.stderr
    assert changes(before, tree_hashes(ws.root)) == []


# --------------------------------------------------------------------------- executors


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("flags, named", [
    (["--ray-address", "127.0.0.1:{port}"], ["The Ray cluster at 127.0.0.1:{port} does not answer", "--ray-address"]),
    (["--executor", "ray", "--ray-address", "headnode"], ["'headnode' is not host:port"]),
    (["--executor", "rya"], ["Unknown executor 'rya'", "valid: local, processes, ray"]),
    (["--executor", "local", "--ray-address", "127.0.0.1:{port}"], ["--ray-address is for --executor ray"]),
], ids=["address-does-not-answer", "address-without-port", "executor-typo", "address-with-local"])
def test_executor_mistakes(ws, capsys, flags, named):
    port = _closed_port()
    refused(capsys, ws, ["run", ws.study, *[f.format(port=port) for f in flags]], *[n.format(port=port) for n in named])
