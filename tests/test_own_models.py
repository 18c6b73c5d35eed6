"""Studies of models other than the ResNet-18 the tool grew up on (issue #27): a researcher's own CNN,
named by an import path to its class, and a small Vision Transformer from torchvision's own class
with `arch_options`, each trained and taken through every stage and the report in one `protoscope
run`; and checkpoints a user's training loop saved under its own file names."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from conftest import tiny_study_dict
from protoscope.cli import main
from protoscope.store import MetricsTable

pytestmark = pytest.mark.usefixtures("one_thread")

OWN_CNN = '''
from torch import nn


class SmallCNN(nn.Module):
    """A lab's own CNN: its classifier lives in `head`, which protoscope removes for SimCLR."""

    def __init__(self, width=8, classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x):
        return self.head(self.pool(self.features(x)).flatten(1))
'''

SECTIONS = {
    "synth": {"repeats": 1, "pool_size": 8, "cma_generations": 1, "adam_steps": 2, "rf_samples": 4},
    "analyze": {"spaces": ["pixel"], "distances": ["mse"]},
    "rsa": {"images": 24, "snapshots": [0, 1]},
    "align": {"images": 24, "mi_samples": 200, "penalties": [0.1], "sparse_iter": 20},
}


def _study(tmp_path, defaults: dict, layers: list[str], atlas_layer: str) -> dict:
    data = tiny_study_dict(tmp_path / "store", layers=layers, **SECTIONS)
    data["defaults"] = {**data["defaults"], "epochs": 1, **defaults}
    del data["defaults"]["width"], data["defaults"]["small_input"]
    data["runs"] = [{"condition": "clrjit", "seed": [0, 1]}]
    data["probe"]["classifiers"] = ["logreg"]
    data["atlas"] = {"runs": ["clrjit-s0"], "layers": [atlas_layer], "epochs": [0, 1], "images": 40, "grid": 3,
                     "min_count": 1, "adam_steps": 2, "pool_size": 4}
    return data


def _every_stage_ran(tmp_path, layers: list[str], units: dict[str, int], size: int) -> None:
    import zarr

    store = tmp_path / "store"
    table = MetricsTable(store)
    for stage in ("probe", "evolve", "analyze", "rsa", "align", "atlas"):
        assert len(table.read(stage)) > 0, stage
    for layer, count in units.items():  # one prototype per unit: units are channels or token features
        group = zarr.open_group(str(store / "arrays.zarr" / "runs" / "clrjit-s0" / layer), mode="r")
        assert group["prototype"].shape == (2, 1, count, size, size, 3)  # epochs, repeats, units, image
    assert set(table.read("align")["layer"]) >= set(layers)
    site = store / "site"
    assert (site / "index.html").is_file() and sorted(p.name for p in (site / "data").iterdir()) == ["index.js", "r0", "r1"]


def test_a_cnn_of_your_own_runs_every_stage_with_the_report(tmp_path, write_study, monkeypatch):
    (tmp_path / "mylab_nets.py").write_text(OWN_CNN)
    monkeypatch.syspath_prepend(str(tmp_path))
    layers = ["features.1", "features.4"]
    data = _study(tmp_path, {"arch": "mylab_nets:SmallCNN", "arch_options": {"width": 4}}, layers, "features.4")
    assert main(["run", str(write_study(data))]) == 0
    _every_stage_ran(tmp_path, layers, {"features.1": 4, "features.4": 8}, 16)
    probe = MetricsTable(tmp_path / "store").read("probe")
    assert set(probe["layer"]) == {"head"}  # the default representation: where the classifier stood


def test_a_small_vit_runs_every_stage_with_the_report(tmp_path, write_study):
    layers = ["encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"]
    vit = {"image_size": 16, "patch_size": 4, "num_layers": 2, "num_heads": 2, "hidden_dim": 12, "mlp_dim": 24}
    data = _study(tmp_path, {"arch": "torchvision.models:VisionTransformer", "arch_options": vit,
                             "optimizer": {"name": "adamw", "lr": 0.001, "batch_size": 32, "warmup_steps": 1}},
                  layers, layers[1])
    assert main(["run", str(write_study(data))]) == 0
    _every_stage_ran(tmp_path, layers, {layer: 12 for layer in layers}, 16)  # 12 features, not 17 tokens
    rsa = MetricsTable(tmp_path / "store").read("rsa")
    assert len(rsa)


def test_checkpoints_under_your_own_names_are_found(tmp_path, write_study, capsys):
    """A training loop's `ckpt_{epoch_index}.pt` (epoch index 0 = after the first epoch) with its
    classifier kept: `head: keep` studies the logits layer too."""
    from protoscope.nets.models import build_model

    folder = tmp_path / "theirs"
    folder.mkdir()
    for index in range(2):
        torch.manual_seed(index)
        model = build_model("resnet18", width=0.0625, small_input=True, num_classes=5)
        torch.save({"epoch": index, "state_dict": model.state_dict()}, folder / f"ckpt_{index}.pt")
    data = tiny_study_dict(tmp_path / "store", layers=["layer4", "fc"])
    data["runs"] = [{"name": "theirs", "path": str(folder), "checkpoints": "ckpt_{epoch_index}.pt"}]
    data["defaults"]["head"] = "keep"
    data["probe"]["classifiers"] = ["logreg"]
    assert main(["probe", str(write_study(data))]) == 0
    assert sorted(MetricsTable(tmp_path / "store").read("probe")["epoch"].unique()) == [1, 2]
    data["runs"][0]["checkpoints"] = "ckpt_{epoch}.pt"
    data["store"] = str(tmp_path / "store2")
    assert main(["probe", str(write_study(data))]) == 0
    assert sorted(MetricsTable(tmp_path / "store2").read("probe")["epoch"].unique()) == [0, 1]
    data["runs"][0]["checkpoints"] = "ckpt_{epoch_idx}.pt"
    assert main(["probe", str(write_study(data))]) == 2
    assert "{epoch_index}" in capsys.readouterr().err
    with open(tmp_path / "head.yaml", "w") as f:  # training with the classifier kept is refused
        data2 = tiny_study_dict(tmp_path / "store3")
        data2["defaults"]["head"] = "keep"
        yaml.safe_dump(data2, f)
    assert main(["train", str(tmp_path / "head.yaml")]) == 2
    assert "head: keep" in capsys.readouterr().err
