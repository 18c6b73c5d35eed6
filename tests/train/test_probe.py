import numpy as np
import pytest
import torch

from protoscope.nets.models import build_model
from protoscope.train.probe import chance_level, fit_probes, pooled_features


def _centres(d, separation, seed=0):
    return np.random.default_rng(seed).normal(size=(4, d)) * separation


def _blobs(n, centres, seed):
    """n points around the 4 class centres; labels in random order, so row i of two draws need not share a class."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 4)
    return centres[y] + rng.normal(size=(n, centres.shape[1])), y


def test_separable_features_are_decoded():
    centres = _centres(20, 3.0)
    xtr, ytr = _blobs(400, centres, seed=1)
    xte, yte = _blobs(200, centres, seed=2)  # held out: the same classes, independently drawn points
    nearest = np.sqrt(((xte[:, None] - xtr[None]) ** 2).sum(-1)).min(1)
    assert nearest.min() > 1.0  # no test point is a (noisy) copy of a training point
    results = fit_probes(xtr, ytr, xte, yte, adam_epochs=50)
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
