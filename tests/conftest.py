"""Shared fixtures: small studies written to a temporary folder."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
import yaml
from xdist_crashes import pytest_xdist_make_scheduler  # noqa: F401  (a hook: pytest finds it by name)

# Two xdist workers share two cores: one thread each avoids oversubscription.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
warnings.filterwarnings("ignore", message=".*to_tensor.*deprecated.*")


def tiny_study_dict(store, **overrides) -> dict:
    """A study that trains in seconds: 8-16-32-64... channels / 16, 16 px images."""
    study = {
        "name": "tiny",
        "store": str(store),
        "workers": 0,
        "defaults": {
            "arch": "resnet18", "width": 0.0625, "small_input": True, "epochs": 2,
            "data": {"name": "shapes", "image_size": 16, "epoch_size": 64},
            "optimizer": {"lr": 0.05, "batch_size": 32, "warmup_steps": 1},
            "simclr": {"temperature": 0.5, "hidden_dim": 16, "projection_dim": 8,
                       "augment": {"gaussian_blur": 0.0, "min_scale": 0.5}},
        },
        "runs": [{"condition": ["clrjit", "keepclr"], "seed": 0}],
        "probe": {"train_size": 64, "test_size": 32, "adam_epochs": 5},
    }
    for key, value in overrides.items():
        study[key] = value
    return study


@pytest.fixture(scope="module")
def one_thread():
    """For modules of many tiny tensor ops: a second thread only spins on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def write_study(tmp_path):
    """Write a study dict as YAML; returns the file path."""

    def write(data: dict, name: str = "study.yaml"):
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


@pytest.fixture
def tiny_study(tmp_path, write_study):
    return write_study(tiny_study_dict(tmp_path / "store"))


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster of 2 CPUs, shared by every test that needs one; the tests folder is on the
    workers' path, so stages defined in test modules can run there too."""
    import logging
    import sys
    from pathlib import Path

    import ray

    from protoscope.executors import ray_on_loopback

    tests = str(Path(__file__).parent)
    with ray_on_loopback():  # as a cluster protoscope starts: nothing listens beyond 127.0.0.1
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
                 object_store_memory=200 * 2**20, runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([tests, *sys.path])}})
    yield ray
    ray.shutdown()
