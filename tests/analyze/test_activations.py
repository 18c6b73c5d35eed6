"""Probe-set activations: one truncated pass per epoch, stored per (run, layer, epoch), resumable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from protoscope.stages import execute
from protoscope.analyze.activations import layer_activations, stimulus_set, stream_activations
from protoscope.stages.activations import ActivationStage, compute_activations
from protoscope.store.activations import activation_store, read_activations
from protoscope.data.datasets import normalize
from protoscope.errors import UserError
from protoscope.nets.checkpoints import load_into
from protoscope.nets.models import build_model
from protoscope.study import load_study

from .conftest import ARCH, checkpoint_study_dict


def hooked(model, layers, images):
    """Reference: the full model's forward pass, outputs caught by forward hooks."""
    caught = {}
    handles = [model.get_submodule(name).register_forward_hook(
        lambda _m, _i, out, name=name: caught.__setitem__(name, out.detach().clone())) for name in layers]
    with torch.no_grad():
        model.eval()(normalize(images))
    for h in handles:
        h.remove()
    return caught


def test_stream_matches_full_forward_with_hooks():
    torch.manual_seed(0)
    model = build_model(**ARCH)
    images = torch.randint(0, 256, (10, 3, 16, 16), dtype=torch.uint8)
    ref = hooked(model, ["layer1", "layer3"], images)
    raw = list(stream_activations(model, ["layer1", "layer3"], images, device="cpu", batch_size=4, pool=False))
    pooled = list(stream_activations(model, ["layer1", "layer3"], images, device="cpu", batch_size=4))
    assert [len(b["layer1"]) for b in raw] == [4, 4, 2]
    for layer in ("layer1", "layer3"):
        full = torch.cat([b[layer] for b in raw])
        assert full.dtype == torch.float32 and not full.requires_grad
        torch.testing.assert_close(full, ref[layer], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.cat([b[layer] for b in pooled]), ref[layer].mean((2, 3)), rtol=1e-5, atol=1e-5)
    flat = layer_activations(model, ["layer3"], images, device="cpu", features="flatten")["layer3"]
    torch.testing.assert_close(flat, ref["layer3"].flatten(1), rtol=1e-5, atol=1e-5)


def test_probe_set_is_the_rsa_section_size_and_balanced(ckpt_study):
    probe = stimulus_set(ckpt_study)
    assert probe.images.shape == (24, 3, 16, 16) and probe.images.dtype == torch.uint8
    assert np.bincount(probe.labels.numpy()).tolist() == [6, 6, 6, 6]
    assert len(probe.categories) == 4


def test_compute_store_read_and_resume(ckpt_study):
    outcome = execute(ActivationStage(), ckpt_study)
    calls = [job.key[:2] for job in outcome.finished]
    assert outcome.done_now == 6 and calls == [(r, e) for r in ("a", "b") for e in range(3)]

    acts = read_activations(ckpt_study, "b", "layer3")
    assert acts.values.shape == (3, 24, 16) and acts.values.dtype == np.float32 and acts.epochs == [0, 1, 2]
    probe = stimulus_set(ckpt_study)
    np.testing.assert_array_equal(acts.labels, probe.labels.numpy())
    assert acts.categories == probe.categories
    model = load_into(build_model(**ARCH), ckpt_study.run_dir(ckpt_study.run("b")) / "epoch_001.safetensors")
    ref = hooked(model, ["layer3"], probe.images)["layer3"].mean((2, 3)).numpy()
    np.testing.assert_allclose(acts.at(1), ref, rtol=1e-5, atol=1e-5)
    assert read_activations(ckpt_study.store, "b", "layer3", epochs=[2, 0]).epochs == [2, 0]

    # Everything stored: nothing recomputed. An unfinished epoch (marker unset) is redone alone.
    assert compute_activations(ckpt_study) == 0
    import zarr

    done = zarr.open_array(activation_store(ckpt_study).path / "runs/a/layer1/done", mode="r+")
    done[1] = False
    outcome = execute(ActivationStage(), ckpt_study)
    assert [job.key[:2] for job in outcome.finished] == [("a", 1)]


def test_xarray_opens_with_named_dims(ckpt_study):
    import xarray as xr

    compute_activations(ckpt_study, runs=["a"], layers=["layer1"])
    tree = xr.open_datatree(activation_store(ckpt_study).path, engine="zarr", consolidated=False, zarr_format=3)
    ds = tree["runs/a/layer1"].ds
    assert ds.activation.dims == ("epoch", "image", "unit") and ds.label.dims == ("image",)
    assert ds.activation.sel(epoch=2).shape == (24, 4)


def test_changed_settings_and_missing_epochs_are_clear_errors(tmp_path, write_study, ckpt_study):
    compute_activations(ckpt_study, runs=["a"], layers=["layer1"])
    bigger = load_study(write_study(dict(checkpoint_study_dict(tmp_path), rsa={"images": 32}), "other.yaml"))
    with pytest.raises(UserError, match="other settings.*images"):
        compute_activations(bigger, runs=["a"], layers=["layer1"])
    later = load_study(write_study(dict(checkpoint_study_dict(tmp_path), rsa={"epochs": [0, 7]}), "later.yaml"))
    with pytest.raises(UserError, match=r"no checkpoint for epochs \[7\]"):
        compute_activations(later)
    with pytest.raises(UserError, match="not stored for epochs"):
        read_activations(ckpt_study, "a", "layer1", epochs=[0, 5])
    with pytest.raises(UserError, match="Did you mean 'layer1'"):
        read_activations(ckpt_study, "a", "layer2")
