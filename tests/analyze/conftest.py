"""Run folders of untrained checkpoints: activations and RSA need weights, not training."""

from __future__ import annotations

import pytest
import torch

from protoscope.nets.checkpoints import checkpoint_name, save_state
from protoscope.nets.models import build_model

ARCH = {"arch": "resnet18", "width": 0.0625, "small_input": True}


def checkpoint_runs(root, names=("a", "b"), epochs: int = 3) -> dict:
    """Folders `root/<name>/epoch_NNN.safetensors`, each epoch a different random init."""
    runs = []
    for r, name in enumerate(names):
        folder = root / name
        for epoch in range(epochs):
            torch.manual_seed(100 * r + epoch)
            save_state(folder / checkpoint_name(epoch), build_model(**ARCH).state_dict())
        runs.append({"name": name, "path": str(folder), "seed": r})
    return runs


def checkpoint_study_dict(tmp_path, names=("a", "b"), epochs: int = 3, **rsa) -> dict:
    return {
        "name": "ckpts", "store": str(tmp_path / "store"), "device": "cpu",
        "layers": ["layer1", "layer3"],
        "defaults": dict(ARCH, data={"name": "shapes", "image_size": 16}),
        "runs": checkpoint_runs(tmp_path / "runs", names, epochs),
        "rsa": dict({"images": 24, "batch_size": 10}, **rsa),
    }


@pytest.fixture
def ckpt_study(tmp_path, write_study):
    """A two-run, three-epoch study of random checkpoints (no training), 24 stimulus images."""
    from protoscope.study import load_study

    return load_study(write_study(checkpoint_study_dict(tmp_path)))
