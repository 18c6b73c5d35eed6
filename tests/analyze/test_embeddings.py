"""Embedding spaces: local weights only (a clear error when missing), the study's checkpoints, stored once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision import models as tvm

from protoscope.analyze.embeddings import (
    PENULTIMATE, ModelSpace, checkpoint_space, load_pretrained, make_spaces, pretrained_space, weights_file,
)
from protoscope.stages import analyze as analyze_prototypes
from protoscope.data.datasets import normalize
from protoscope.errors import UserError
from protoscope.nets.checkpoints import load_into, save_state
from protoscope.nets.models import build_model
from protoscope.store import MetricsTable
from protoscope.store.arrays import ArrayStore
from protoscope.study import load_study

from .conftest import ARCH, checkpoint_study_dict


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache of our own (TORCH_HOME is where torch.hub.get_dir() looks)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert torch.hub.get_dir() == str(tmp_path / "torch" / "hub")
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_the_ten_seed_networks_are_known_by_name():
    assert set(PENULTIMATE) == {"resnet50", "resnet101", "resnet152", "inception_v3", "vgg16", "vgg19",
                                "densenet121", "densenet169", "densenet201", "mobilenet_v2"}
    assert all(name in tvm.list_models(module=tvm) for name in PENULTIMATE)


def test_a_missing_weight_file_says_where_to_put_it(hub, tmp_path, write_study):
    with pytest.raises(UserError) as info:
        weights_file("resnet50")
    message = str(info.value)
    assert str(hub / "resnet50-0676ba61.pth") in message and "never downloads" in message
    # through a study: the error comes before any work is done
    study = load_study(write_study({"name": "s", "store": str(tmp_path / "store"), "runs": [{"seed": 0}],
                                    "analyze": {"spaces": ["pixel", {"model": "vgg16", "weights": "IMAGENET1K_V1"}]}}))
    with pytest.raises(UserError, match=str(hub / "vgg16-397923af.pth")):
        make_spaces(study)
    with pytest.raises(UserError, match="not found"):
        weights_file("vgg16", str(tmp_path / "nowhere.pth"))
    with pytest.raises(UserError, match="IMAGENET1K_V2"):
        weights_file("resnet50", "IMAGENET1K_V3")


def test_a_study_names_spaces_it_can_resolve(tmp_path, write_study):
    base = {"name": "s", "store": str(tmp_path / "store"), "runs": [{"seed": 0}]}
    for spaces, field in ((["pixle"], "pixel"), ([{"model": "resnet50", "run": "clrjit-s0"}], "either")):
        with pytest.raises(UserError, match=field):
            load_study(write_study(dict(base, analyze={"spaces": spaces})))
    study = load_study(write_study(dict(base, analyze={"spaces": [{"model": "resnet50", "weights": "w/r50.pth"}]})))
    assert study.analyze.spaces[0].weights == str(tmp_path / "w" / "r50.pth")  # relative to the study file


def test_a_pretrained_network_loads_from_the_local_hub_cache(hub):
    torch.manual_seed(0)
    reference = tvm.mobilenet_v2().eval()
    hub.mkdir(parents=True)
    torch.save(reference.state_dict(), hub / "mobilenet_v2-b0353104.pth")  # what torchvision's download would be

    space = pretrained_space("mobilenet_v2")
    assert space.settings()["image_size"] == 224 and space.settings()["layer"] == "adaptive_avg_pool2d"
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():  # the penultimate features, computed the plain way
        x = normalize(F.interpolate(images, size=(224, 224), mode="bilinear", align_corners=False))
        want = torch.flatten(F.adaptive_avg_pool2d(reference.features(x), 1), 1)
    got = space.embed(images)
    assert got.shape == (3, 1280)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_densenet_files_with_the_published_key_names_load(tmp_path):
    torch.manual_seed(0)
    net = tvm.densenet121()
    old = {}
    for key, value in net.state_dict().items():  # 'denselayer1.norm1.weight' -> 'denselayer1.norm.1.weight'
        if key.endswith("num_batches_tracked"):
            continue  # the published files predate these counters
        for part in ("norm", "relu", "conv"):
            for i in "12":
                key = key.replace(f".{part}{i}.", f".{part}.{i}.")
        old[key] = value
    assert any(".norm.1." in k for k in old)
    save_state(tmp_path / "densenet121.safetensors", old)
    loaded = load_pretrained("densenet121", str(tmp_path / "densenet121.safetensors"))
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_a_file_of_another_network_is_refused_with_its_name(tmp_path):
    save_state(tmp_path / "small.safetensors", build_model(**ARCH).state_dict())
    with pytest.raises(UserError, match="small.safetensors"):
        load_pretrained("mobilenet_v2", str(tmp_path / "small.safetensors"))


def test_a_checkpoint_of_the_study_embeds_like_its_pooled_features(tmp_path, write_study):
    study = load_study(write_study(checkpoint_study_dict(tmp_path)))
    space = checkpoint_space(study, "a", epoch=1)
    assert space.name == "a-e1" and checkpoint_space(study, "b").name == "b-e2"  # default: the last epoch
    model = load_into(build_model(**ARCH), study.run_dir(study.run("a")) / "epoch_001.safetensors").eval()
    images = torch.rand(5, 3, 16, 16)
    with torch.no_grad():
        want = torch.flatten(model.avgpool(model.layer4(model.layer3(model.layer2(model.layer1(
            model.relu(model.bn1(model.conv1(normalize(images))))))))), 1)
    torch.testing.assert_close(space.embed(images), want, rtol=1e-4, atol=1e-5)
    with pytest.raises(UserError, match="no checkpoint for epoch 7"):
        checkpoint_space(study, "a", epoch=7)


def test_embeddings_are_computed_once_and_a_redefined_space_is_refused(tmp_path, write_study, monkeypatch):
    data = checkpoint_study_dict(tmp_path, names=("a",), epochs=2)
    data["layers"] = ["layer1"]
    data["analyze"] = {"spaces": ["pixel", {"run": "a", "epoch": 1, "name": "net"}], "batch_size": 7}
    study = load_study(write_study(data))
    store = ArrayStore(study.store / "arrays.zarr")
    store.ensure_layer("a", "layer1", epochs=[0, 1], repeats=2, units=4, image_size=16, latent_dim=1, steps=1)
    rng = np.random.default_rng(0)
    for e in (0, 1):
        store.write_rf("a", "layer1", e, np.ones((16, 16), np.float32), np.ones((16, 16), np.float32))
        for r in (0, 1):
            store.write_job("a", "layer1", e, r, prototype=rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8),
                            score=np.ones(4, np.float32), latent=np.zeros((4, 1), np.float32),
                            trace=np.zeros((4, 1), np.float32), silent=np.zeros(4, bool))
    calls = []
    real = ModelSpace.embed
    monkeypatch.setattr(ModelSpace, "embed", lambda self, x: calls.append(len(x)) or real(self, x))
    assert analyze_prototypes(study) == 2  # pixel and net
    assert sum(calls) == 2 * 2 * 4 and max(calls) <= 7  # every prototype once, in batches
    table = MetricsTable(study.store).read("analyze")
    assert set(table["space"].dropna()) == {"pixel", "net"}

    calls.clear()  # a lost table file is recomputed from the stored embeddings: nothing is embedded again
    (study.store / "metrics/analyze/a/layer1/spaces/net.parquet").unlink()
    assert analyze_prototypes(study) == 1 and calls == []

    data["analyze"]["spaces"][1]["epoch"] = 0  # same name, another network
    with pytest.raises(UserError, match="other settings"):
        analyze_prototypes(load_study(write_study(data)))
