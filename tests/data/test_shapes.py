import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from protoscope.data import shapes
from protoscope.data.shapes import CLASSES, ShapeStream, draw, labelled_set


@pytest.mark.parametrize("name, area", [
    ("circle", math.pi),
    ("square", 2.0),
    ("triangle", 3 * math.sqrt(3) / 4),
    # a 10-vertex star, outer radius 1, inner 0.45: ten triangles
    ("star", 10 * 0.5 * 1.0 * 0.45 * math.sin(2 * math.pi / 10)),
])
def test_shape_areas_match_geometry(name, area):
    """The filled fraction of each outline equals its closed-form area, at any rotation."""
    n = 8
    labels = torch.full((n,), CLASSES.index(name))
    radius = torch.full((n,), 0.4)
    rotation = torch.linspace(0, 2 * math.pi, n)
    white, black = torch.ones(n, 3), torch.zeros(n, 3)
    images = draw(labels, radius, torch.zeros(n, 2), rotation, white, black, size=96)
    fraction = images.float().mean(dim=(1, 2, 3)) / 255
    assert torch.allclose(fraction, torch.full((n,), area * 0.4**2), atol=0.004), fraction


def test_batches_are_deterministic_and_fresh():
    stream = ShapeStream(size=16, seed=3, epoch_size=64, batch_size=16)
    assert stream.steps_per_epoch == 4
    a, b = stream.batch(1, 2), stream.batch(1, 2)
    assert torch.equal(a, b) and a.dtype == torch.uint8 and a.shape == (16, 3, 16, 16)
    assert not torch.equal(a, stream.batch(1, 3)) and not torch.equal(a, stream.batch(2, 2))
    assert not torch.equal(a, ShapeStream(size=16, seed=4, epoch_size=64, batch_size=16).batch(1, 2))


def test_labelled_set_is_balanced_and_sorted():
    images, labels = labelled_set(40, seed=0, size=16)
    assert images.shape == (40, 3, 16, 16)
    assert torch.equal(torch.bincount(labels), torch.full((4,), 10))
    assert torch.equal(labels, labels.sort().values)


def _form_statistics(images: torch.Tensor) -> torch.Tensor:
    """Rotation- and colour-free form: fill of the circumscribing circle, and perimeter / sqrt(area)."""
    x = images.float() / 255
    corner = x[:, :, 0, 0]
    fg = ((x - corner[:, :, None, None]).norm(dim=1) > 0.15).float()
    n, h, w = fg.shape
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    area = fg.sum(dim=(1, 2))
    cy = (fg * yy).sum(dim=(1, 2)) / area
    cx = (fg * xx).sum(dim=(1, 2)) / area
    dist = torch.sqrt((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2) * fg
    r_max = dist.flatten(1).max(dim=1).values + 0.5
    fill = area / (math.pi * r_max**2)
    eroded = -torch.nn.functional.max_pool2d(-fg[:, None], 3, stride=1, padding=1)[:, 0]
    perimeter = (fg - eroded).sum(dim=(1, 2))
    return torch.stack([fill, perimeter / area.sqrt()], dim=1)


def test_colour_is_nuisance_and_form_is_signal():
    """Colour statistics predict the class at chance; a form statistic predicts it well."""
    images, labels = labelled_set(800, seed=0, size=32)
    colour = (images.float() / 255).mean(dim=(2, 3)).numpy()  # mean RGB per image
    form = _form_statistics(images).numpy()
    y = labels.numpy()
    train, test = np.arange(len(y)) % 2 == 0, np.arange(len(y)) % 2 == 1
    acc = lambda f: LogisticRegression(max_iter=2000).fit(f[train], y[train]).score(f[test], y[test])  # noqa: E731
    assert acc(colour) < 0.35  # 4 classes: chance is 0.25
    assert acc(form) > 0.8


def test_foreground_and_background_colours_are_kept_apart():
    images, _ = labelled_set(200, seed=5, size=32)
    x = images.float() / 255
    corner = x[:, :, 0, 0]
    spread = (x - corner[:, :, None, None]).norm(dim=1).flatten(1).max(dim=1).values
    assert (spread > shapes._MIN_COLOUR_DISTANCE - 0.05).all()
