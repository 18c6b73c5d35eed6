import numpy as np
import pytest
import torch

from protoscope.nets.models import build_model
from protoscope.train.probe import chance_level, fit_probes, pooled_features


def _blobs(n, d, separation, seed):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    centres = rng.normal(size=(4, d)) * separation
    return centres[y] + rng.normal(size=(n, d)), y


def test_separable_features_are_decoded():
    xtr, ytr = _blobs(400, 20, 3.0, 0)
    xte, yte = _blobs(200, 20, 3.0, 0)
    xte = xte + 0  # same centres (same seed), fresh noise
    results = fit_probes(xtr, ytr, xte + np.random.default_rng(1).normal(size=xte.shape) * 0.1, yte, adam_epochs=50)
    for name in ("logreg", "svm", "adam"):
        assert results[name]["test"] > 0.95, (name, results)


def test_random_labels_give_chance_on_test():
    rng = np.random.default_rng(0)
    xtr, xte = rng.normal(size=(400, 30)), rng.normal(size=(400, 30))
    ytr, yte = rng.integers(0, 4, 400), rng.integers(0, 4, 400)
    results = fit_probes(xtr, ytr, xte, yte, adam_epochs=50)
    for name, acc in results.items():
        assert abs(acc["test"] - 0.25) < 0.08, (name, acc)
        assert acc["train"] > acc["test"]  # 30 dims, 400 points: some overfitting


def test_chance_level():
    assert chance_level([0, 0, 1], [0, 1, 1, 1]) == 0.25


def test_pooled_features_average_over_space():
    torch.manual_seed(0)
    model = build_model("resnet18", width=0.125, small_input=True)
    images = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    pooled = pooled_features(model, "avgpool", images, torch.device("cpu"))
    block = pooled_features(model, "layer4", images, torch.device("cpu"))
    assert pooled.shape == (5, 64) and block.shape == (5, 64)
    assert np.allclose(pooled, block, atol=1e-5)  # avgpool is the spatial mean of layer4
