"""The command line as a user meets it: exit codes, one-line errors, resume."""

import subprocess
import sys

import pytest
import yaml

from protoscope.cli import main
from protoscope.nets.checkpoints import save_state
from protoscope.nets.models import build_model
from protoscope.store import MetricsTable
from conftest import tiny_study_dict


def test_config_typo_is_one_line_exit_2(write_study, tmp_path, capsys):
    data = tiny_study_dict(tmp_path / "store")
    data["defaults"]["optimizer"]["lrr"] = 0.1
    path = write_study(data)
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert "defaults.optimizer.lrr" in err and str(path) in " ".join(err.split())
    assert "Traceback" not in err


def test_debug_shows_the_traceback(write_study, tmp_path):
    data = tiny_study_dict(tmp_path / "store")
    data["defaults"]["optimizer"]["lrr"] = 0.1
    path = write_study(data)
    proc = subprocess.run([sys.executable, "-m", "protoscope.cli", "--debug", "train", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "UserError" in proc.stderr


def test_usage_errors_exit_2(capsys):
    assert main(["train"]) == 2
    assert main(["nonsense-verb"]) == 2
    assert main(["--help"]) == 0


@pytest.mark.parametrize("verb", ["train", "probe", "run", "demo", "layers"])
def test_every_verb_has_help_with_an_example(verb, capsys):
    assert main([verb, "--help"]) == 0
    assert "Example: protoscope" in capsys.readouterr().out


def test_wrong_probe_layer_lists_valid_layers(write_study, tmp_path, capsys):
    data = tiny_study_dict(tmp_path / "store")
    data["probe"]["layer"] = "layer9"
    data["runs"] = [{"condition": "clrjit", "seed": 0}]
    data["defaults"]["epochs"] = 1
    path = write_study(data)
    assert main(["run", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "'layer9'" in err and "layer4" in err


def test_corrupt_user_checkpoint_names_the_file_and_writes_nothing(write_study, tmp_path, capsys):
    """A run brought as checkpoints: one is corrupt -> clear error, no results for it."""
    folder = tmp_path / "mine"
    folder.mkdir()
    model = build_model("resnet18", width=0.0625, small_input=True)
    save_state(folder / "epoch_000.safetensors", model.state_dict())
    (folder / "epoch_001.safetensors").write_bytes(b"\x00garbage")
    data = tiny_study_dict(tmp_path / "store")
    data["runs"] = [{"name": "mine", "path": str(folder)}]
    path = write_study(data)
    assert main(["probe", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "epoch_001.safetensors" in err and "Traceback" not in err
    table = MetricsTable(tmp_path / "store")
    assert table.has("probe", "mine/epoch_000") and not table.has("probe", "mine/epoch_001")


def test_user_pt_checkpoints_are_probed(write_study, tmp_path):
    import torch

    folder = tmp_path / "theirs"
    folder.mkdir()
    for epoch in range(2):
        torch.manual_seed(epoch)
        torch.save(build_model("resnet18", width=0.0625, small_input=True).state_dict(), folder / f"epoch_{epoch}.pt")
    data = tiny_study_dict(tmp_path / "store")
    data["runs"] = [{"name": "theirs", "path": str(folder)}]
    study = str(write_study(data))
    assert main(["probe", study]) == 0 and main(["report", study]) == 0  # `run` adds every stage's default budget
    probe = MetricsTable(tmp_path / "store").read("probe")
    assert sorted(probe["epoch"].unique()) == [0, 1]
    assert (tmp_path / "store" / "figures" / "probe_accuracy.png").is_file()
