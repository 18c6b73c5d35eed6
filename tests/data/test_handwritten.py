"""The built-in digits: real scans in random colours, fixed disjoint splits, resumable batches."""

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from protoscope.data import handwritten
from protoscope.data.datasets import labelled
from protoscope.study import DataSpec


def test_the_splits_are_fixed_disjoint_and_cover_every_scan():
    _, labels, train, test = handwritten._scans()
    assert len(train) == handwritten.TRAIN_SCANS and len(set(train) | set(test)) == len(load_digits().target)
    assert not set(train) & set(test)
    assert set(labels[test].tolist()) == set(range(10))  # every digit is held out


def test_labelled_sets_are_balanced_sorted_and_the_probe_set_is_held_out():
    images, labels = handwritten.labelled_set("probe", 100, seed=3, size=24)
    assert images.shape == (100, 3, 24, 24) and images.dtype == torch.uint8
    assert torch.equal(torch.bincount(labels), torch.full((10,), 10)) and torch.equal(labels, labels.sort().values)
    train = labelled(DataSpec(name="digits", image_size=24), "train")
    assert len(train) == handwritten.TRAIN_SCANS and train.categories == handwritten.CLASSES


def test_the_ink_is_the_scan():
    """Drawn in black on white at full scale and no shift, a scan resampled to 8 px is the scan."""
    ink, _, _, _ = handwritten._scans()
    theta = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]])
    grid = torch.nn.functional.affine_grid(theta, (1, 1, 8, 8), align_corners=False)
    again = torch.nn.functional.grid_sample(ink[5:6], grid, align_corners=False)
    assert torch.allclose(again, ink[5:6], atol=1e-6)


def test_batches_are_deterministic_and_fresh():
    stream = handwritten.DigitStream(size=16, seed=1, epoch_size=64, batch_size=32)
    assert torch.equal(stream.batch(2, 1), stream.batch(2, 1))
    assert not torch.equal(stream.batch(2, 1), stream.batch(2, 0)) and stream.steps_per_epoch == 2


def test_colour_is_nuisance_and_the_form_is_signal():
    """Mean colour predicts the digit at chance; the ink's layout (grey level, colour removed) well."""
    images, labels = handwritten.labelled_set("train", 1000, seed=0, size=16)
    x = images.float() / 255
    colour = x.mean(dim=(2, 3)).numpy()
    corner = x[:, :, :1, :1]
    ink = (x - corner).norm(dim=1).flatten(1)  # distance from the background colour, per pixel
    ink = (ink / ink.max(dim=1, keepdim=True).values).numpy()  # contrast removed too
    y = labels.numpy()
    train, test = np.arange(len(y)) % 2 == 0, np.arange(len(y)) % 2 == 1
    acc = lambda f: LogisticRegression(max_iter=3000).fit(f[train], y[train]).score(f[test], y[test])  # noqa: E731
    assert acc(colour) < 0.2  # 10 classes: chance 0.1
    assert acc(ink) > 0.5  # 5 x chance, from a linear read-out of shifted, scaled handwriting
