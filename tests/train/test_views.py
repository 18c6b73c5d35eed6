"""The batched views against lightly's own SimCLRTransform, the reference they stand in for."""

import random

import pytest
import torch
from lightly.transforms import SimCLRTransform
from scipy.stats import ks_2samp
from torchvision.transforms.functional import to_pil_image

from protoscope.data.datasets import IMAGENET_MEAN, IMAGENET_STD
from protoscope.data.shapes import ShapeStream
from protoscope.demo import demo_study
from protoscope.study import builtin_study, load_study
from protoscope.train.views import augment_settings, make_views, view_augmentation


def _statistics(views: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-view numbers that colour jitter, grayscale, crops and blur each move."""
    return {
        "red": views[:, 0].mean((1, 2)),
        "green": views[:, 1].mean((1, 2)),
        "contrast": views.std((1, 2, 3)),
        "chroma": views.std(1).mean((1, 2)),
        "edges": (views[..., 1:] - views[..., :-1]).abs().mean((1, 2, 3)),
    }


def _lightly_views(run, images) -> torch.Tensor:
    reference = SimCLRTransform(input_size=run.data.image_size, **augment_settings(run),
                                normalize={"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)})
    torch.manual_seed(0)
    random.seed(0)
    return torch.stack([view for image in images for view in reference(to_pil_image(image))])


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    study = demo_study(tmp_path_factory.mktemp("views"))
    return {run.condition: run for run in study.runs}


@pytest.mark.parametrize("condition", ["clrjit", "keepclr"])
def test_views_follow_lightlys_distribution(demo_runs, condition):
    run = demo_runs[condition]
    images = ShapeStream(run.data.image_size, 0, 512, 512).batch(0, 0)
    ours = _statistics(torch.cat(make_views(view_augmentation(run), images, 1)))
    theirs = _statistics(_lightly_views(run, images))
    other = _statistics(_lightly_views(demo_runs["keepclr" if condition == "clrjit" else "clrjit"], images))
    for name in ours:  # 1024 views a side: 0.08 is beyond the 1 % critical value (0.072)
        assert ks_2samp(ours[name].numpy(), theirs[name].numpy()).statistic < 0.08, name
    # ... and the test can tell the two conditions apart
    assert ks_2samp(ours["chroma"].numpy(), other["chroma"].numpy()).statistic > 0.2


def test_keepclr_keeps_colour_and_clrjit_changes_it(tiny_study):
    study = load_study(tiny_study)
    flat = torch.tensor([200, 40, 90], dtype=torch.uint8).view(1, 3, 1, 1).expand(20, 3, 16, 16).contiguous()

    def colour_changes(run):
        views = torch.cat(make_views(view_augmentation(run), flat, 0))
        colours = views.mean(dim=(2, 3))
        return (colours - colours[0]).abs().max().item()

    runs = {r.condition: r for r in study.runs}
    assert colour_changes(runs["keepclr"]) < 1e-4  # crops and flips of a flat image keep its colour
    assert colour_changes(runs["clrjit"]) > 0.1


def test_views_are_a_function_of_the_seed(demo_runs):
    augment = view_augmentation(demo_runs["clrjit"])
    images = ShapeStream(32, 0, 16, 16).batch(0, 0)
    first, again, other = make_views(augment, images, 5), make_views(augment, images, 5), make_views(augment, images, 6)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0]) and not torch.equal(first[0], first[1])
    state = torch.get_rng_state()
    make_views(augment, images, 7)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG did not move


def _red_direction(views: torch.Tensor) -> torch.Tensor:
    """Per view, the angle (degrees, counter-clockwise from 'up') of the red half's centroid."""
    weight = (views[:, 0] - views[:, 2]).clamp(min=0)
    size = views.shape[-1]
    grid = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    x = (weight * grid[None, None, :]).sum((1, 2)) / weight.sum((1, 2))
    y = (weight * grid[None, :, None]).sum((1, 2)) / weight.sum((1, 2))
    return torch.rad2deg(torch.atan2(-x, -y))


def test_rotation_without_degrees_is_lightlys_quarter_turn(tmp_path):
    """lightly's rr_degrees=None turns a view by exactly 90° (counter-clockwise) with probability rr_prob."""
    still = {"hf_prob": 0.0, "vf_prob": 0.0, "gaussian_blur": 0.0, "min_scale": 1.0, "rr_prob": 0.5}
    study = load_study(builtin_study("demo"), {"store": str(tmp_path), "defaults": {"simclr": {"augment": still}}})
    run = next(run for run in study.runs if run.condition == "keepclr")  # no colour jitter
    image = torch.zeros(3, 32, 32, dtype=torch.uint8)
    image[0, :16], image[2, 16:] = 255, 255  # red above, blue below
    images = image.expand(200, 3, 32, 32).contiguous()
    for views in (torch.cat(make_views(view_augmentation(run), images, 0)), _lightly_views(run, images[:100])):
        angle = _red_direction(views)
        up, left = angle.abs() < 5, (angle - 90).abs() < 5
        assert bool((up | left).all())  # no angle in between
        assert 0.35 < left.float().mean().item() < 0.65
