"""Tests for protoscope.synth.receptive: exact receptive-field boxes and crops, Gaussian fits, gradient maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from protoscope.errors import UserError
from protoscope.nets.layers import truncate
from protoscope.nets.models import build_model
from protoscope.synth.position import unit_position
from protoscope.synth.receptive import (
    GaussianFit,
    centre_activation,
    centre_input_box,
    crop_plan,
    fit_gaussian,
    gaussian_mask,
    rf_map,
    rf_mask,
)


pytestmark = pytest.mark.usefixtures("one_thread")  # these tensors are small: one thread is faster


@pytest.fixture(scope="module")
def narrow() -> nn.Module:
    torch.manual_seed(0)
    return build_model("resnet18", width=0.25, small_input=True).eval()


@pytest.fixture(scope="module")
def full() -> nn.Module:
    torch.manual_seed(0)
    return build_model("resnet18").eval()


# --------------------------------------------------------------------------
# Closed-form receptive fields of a conv chain (the reference for the boxes)
# --------------------------------------------------------------------------

# (kernel, stride, padding) along the main path of each stage; the shortcut
# branches (identity, 1x1 stride-2 downsample) see a subset of that field.
_STAGE = [(3, 1, 1)] * 4
_DOWN_STAGE = [(3, 2, 1)] + [(3, 1, 1)] * 3
FULL_PATH = {"stem": [(7, 2, 3), (3, 2, 1)], "layer1": _STAGE, "layer2": _DOWN_STAGE, "layer3": _DOWN_STAGE, "layer4": _DOWN_STAGE}
NARROW_PATH = {"stem": [(3, 1, 1)], **{k: v for k, v in FULL_PATH.items() if k != "stem"}}


def _recursion(path: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    """Standard recursion: size r += (k-1) j, jump j *= s, offset P += p j; unit c sees [c j - P, c j - P + r)."""
    r, j, p_total = 1, 1, 0
    for k, s, p in path:
        r += (k - 1) * j
        p_total += p * j
        j *= s
    return r, j, p_total


def closed_form_cell(path: list[tuple[int, int, int]], out_hw: tuple[int, int], size: int) -> tuple[int, int]:
    """The cell whose field's centre, c j - P + (r - 1) / 2, is nearest the image centre (every
    cell of the map tried; the lower index on a tie): the reference for `unit_position`."""
    r, j, p_total = _recursion(path)
    return tuple(min(range(n), key=lambda c: (abs(c * j - p_total + (r - 1) / 2 - (size - 1) / 2), c))
                 for n in out_hw)


def closed_form_box(path: list[tuple[int, int, int]], out_hw: tuple[int, int], size: int) -> tuple[int, int, int, int]:
    """The box the studied cell (`closed_form_cell`) sees, clipped to the image."""
    r, j, p_total = _recursion(path)
    cy, cx = closed_form_cell(path, out_hw, size)
    y0, x0 = cy * j - p_total, cx * j - p_total
    return max(0, y0), min(size, y0 + r), max(0, x0), min(size, x0 + r)


def studied(model: nn.Module, layer: str, size) -> tuple[int, int]:
    found = unit_position(model, layer, size)
    return found.y, found.x


def resnet_path(paths: dict, layer: str) -> list[tuple[int, int, int]]:
    out = list(paths["stem"])
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        out += paths[stage]
        if stage == layer:
            return out
    raise AssertionError(layer)


def out_size(model: nn.Module, layer: str, size: int) -> tuple[int, int]:
    with torch.no_grad():
        a = truncate(model, layer)(torch.zeros(1, 3, size, size))[layer]
    return a.shape[2], a.shape[3]


@pytest.mark.parametrize("which", ["narrow", "full"])
@pytest.mark.parametrize("size", [96, 97])
def test_resnet_boxes_equal_closed_form(which: str, size: int, request) -> None:
    model = request.getfixturevalue(which)
    paths = NARROW_PATH if which == "narrow" else FULL_PATH
    for layer in ("layer1", "layer2", "layer3", "layer4"):
        expected = closed_form_box(resnet_path(paths, layer), out_size(model, layer, size), size)
        assert centre_input_box(model, layer, size) == expected, (which, size, layer)


def test_small_boxes_equal_closed_form() -> None:
    torch.manual_seed(0)
    two = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1))
    # 15 px, two 3x3 stride-1 convs: a 5x5 box around pixel 7.
    assert centre_input_box(two, "2", 15) == (5, 10, 5, 10)
    strided = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1))
    # 16 px -> 8: unit 4 (field centre 8, the nearest to 7.5) reads layer-1 units 3..5, which read
    # pixels 5..11 (r = 3 + 2*2 = 7); the middle cell 3 would read 3..9 (centre 6).
    assert centre_input_box(strided, "2", 16) == (5, 12, 5, 12)
    assert centre_input_box(strided, "2", 16, position=(3, 3)) == (3, 10, 3, 10)
    pooled = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1), nn.Conv2d(4, 5, 3, padding=1))
    assert centre_input_box(pooled, "3", 16) == closed_form_box([(3, 1, 1), (3, 2, 1), (3, 1, 1)], (8, 8), 16) == (4, 13, 4, 13)
    # Non-square input: boxes per axis.
    assert centre_input_box(two, "2", (15, 9)) == (5, 10, 2, 7)


class _Shuffle(nn.Module):
    """A channel shuffle: hard-codes a channel split, so the one-channel surrogate cannot run it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return x.view(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)


@pytest.mark.parametrize(
    "net,layer,size,expected",
    [
        # channel shuffle (falls back to the full-width surrogate): 16 -> 8, unit 4 (centre 8, the
        # nearest to 7.5) sees pixels 6..10
        (lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), _Shuffle(), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, padding=1)), "3", 16, (6, 11, 6, 11)),
        # dilated max-pool: 32 -> 16, unit 7 pools layer-1 pixels 12..18 step 2, which see pixels 11..19, then the conv
        (lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(3, 2, 1, dilation=2), nn.Conv2d(4, 4, 3, padding=1)), "2", 32, (10, 21, 10, 21)),
    ],
)
def test_unusual_nets_boxes_and_crops(net, layer: str, size: int, expected) -> None:
    torch.manual_seed(0)
    model = net().eval()
    assert centre_input_box(model, layer, size) == expected
    t = truncate(model, layer)
    images = torch.randn(2, 3, size, size, requires_grad=True)
    acts = t(images)[layer]
    cy, cx = studied(model, layer, size)
    (g,) = torch.autograd.grad(acts[:, :, cy, cx].sum(), images)
    support = torch.nonzero(g.abs().sum(dim=(0, 1)))
    assert support[:, 0].min() >= expected[0] and support[:, 0].max() < expected[1]
    plan = crop_plan(model, layer, size)
    assert plan is not None
    with torch.no_grad():
        diff = centre_activation(t, layer, images, plan) - acts[:, :, cy, cx]
    assert diff.abs().max() <= 1e-5


@pytest.mark.parametrize("which,layer", [("narrow", "layer1"), ("narrow", "layer3"), ("full", "layer1"), ("full", "layer2")])
def test_box_contains_every_pixel_with_real_gradient(which: str, layer: str, request) -> None:
    model = request.getfixturevalue(which)
    size = 96
    y0, y1, x0, x1 = centre_input_box(model, layer, size)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3), requires_grad=True)
    acts = truncate(model, layer)(x)[layer]
    cy, cx = studied(model, layer, size)
    (g,) = torch.autograd.grad(acts[:, :, cy, cx].sum(), x)
    support = g.abs().sum(dim=(0, 1)) > 0
    assert support.any()
    inside = torch.zeros_like(support)
    inside[y0:y1, x0:x1] = True
    assert not (support & ~inside).any()
    # The box is not needlessly large either: the real support reaches most of it.
    rows, cols = torch.nonzero(support.any(1)).flatten(), torch.nonzero(support.any(0)).flatten()
    assert rows[0] - y0 <= 4 and y1 - 1 - rows[-1] <= 4 and cols[0] - x0 <= 4 and x1 - 1 - cols[-1] <= 4


# --------------------------------------------------------------------------
# Crops
# --------------------------------------------------------------------------


def _check_crop(model: nn.Module, layer: str, size: int, expect_crop: bool, paths: dict) -> None:
    """`paths`: the model's conv chain (NARROW_PATH / FULL_PATH), for the closed-form box the plan must contain."""
    plan = crop_plan(model, layer, size)
    assert (plan is not None) == expect_crop, (layer, size, plan)
    net = truncate(model, layer)
    images = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(size))
    with torch.no_grad():
        acts = net(images)[layer]
        cy, cx = studied(model, layer, size)
        ref = acts[:, :, cy, cx]
        got = centre_activation(net, layer, images, plan, position=(cy, cx))
    assert got.shape == ref.shape
    assert (got - ref).abs().max().item() <= 1e-5
    if plan is not None:
        box = plan.box
        # the plan's box is the layer's receptive field: the public function's and the closed form's
        assert box == centre_input_box(model, layer, size), (layer, size)
        assert box == closed_form_box(resnet_path(paths, layer), out_size(model, layer, size), size), (layer, size)
        assert plan.y0 <= box[0] and plan.x0 <= box[2] and plan.y1 >= box[1] and plan.x1 >= box[3]
        assert plan.y0 % plan.stride[0] == 0 and plan.x0 % plan.stride[1] == 0
        assert 0 < plan.fraction < 1
        # Independent of centre_activation: read the crop's output by hand.
        with torch.no_grad():
            part = net(images[:, :, plan.y0 : plan.y1, plan.x0 : plan.x1])[layer][:, :, plan.out_y, plan.out_x]
        assert (part - ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize("size", [96, 97])
def test_crop_equals_full_narrow_resnet(narrow: nn.Module, size: int) -> None:
    for layer in ("layer1", "layer2", "layer3"):
        _check_crop(narrow, layer, size, expect_crop=True, paths=NARROW_PATH)


# layer2's field is 99 px: the centred cell's fills a 95-97 px image, so no crop saves anything;
# a layer2 crop exists only for an image large enough that the field leaves part of it out
@pytest.mark.parametrize("size,layer2_crops", [(96, False), (95, False), (97, False), (128, True)])
def test_crop_equals_full_torchvision_resnet(full: nn.Module, size: int, layer2_crops: bool) -> None:
    _check_crop(full, "layer1", size, expect_crop=True, paths=FULL_PATH)
    _check_crop(full, "layer2", size, expect_crop=layer2_crops, paths=FULL_PATH)


def test_deep_layers_of_full_resnet_need_the_whole_image(full: nn.Module) -> None:
    for layer in ("layer3", "layer4"):
        assert centre_input_box(full, layer, 96) == (0, 96, 0, 96)
        assert crop_plan(full, layer, 96) is None


def test_crop_of_small_pooled_net_and_a_shifted_crop_would_be_wrong() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1), nn.Conv2d(4, 6, 3, stride=2, padding=1),
        nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1),
    ).eval()
    size = 40
    plan = crop_plan(net, "5", size)
    assert plan is not None and plan.stride == (4, 4)
    t = truncate(net, "5")
    images = torch.randn(4, 3, size, size)
    with torch.no_grad():
        acts = t(images)["5"]
        ref = acts[:, :, plan.full_centre[0], plan.full_centre[1]]
        assert (centre_activation(t, "5", images, plan) - ref).abs().max() <= 1e-5
        # The alignment matters: the same crop shifted by one pixel computes something else.
        shifted = t(images[:, :, plan.y0 + 1 : plan.y1 + 1, plan.x0 : plan.x1])["5"][:, :, plan.out_y, plan.out_x]
    assert (shifted - ref).abs().max() > 1e-3


# --------------------------------------------------------------------------
# Gaussian fit
# --------------------------------------------------------------------------


def _gauss_map(h, w, amp, cy, cx, s1, s2, theta, off) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    dx, dy = xx - cx, yy - cy
    u = math.cos(theta) * dx + math.sin(theta) * dy
    v = -math.sin(theta) * dx + math.cos(theta) * dy
    return off + amp * np.exp(-0.5 * ((u / s1) ** 2 + (v / s2) ** 2))


def _angle_diff(a: float, b: float) -> float:
    """Difference of axis angles modulo pi (an ellipse rotated by pi is the same ellipse)."""
    d = (a - b) % math.pi
    return min(d, math.pi - d)


@pytest.mark.parametrize(
    "params",
    [
        (2.0, 18.3, 22.7, 6.0, 3.0, math.radians(30), 0.1),
        (1e-6, 20.0, 15.5, 4.0, 2.5, math.radians(-60), 0.0),  # tiny scale, like raw gradient maps
        (5.0, 25.0, 20.0, 3.0, 5.0, 0.0, 1.0),  # minor/major given in the "wrong" order: the fit canonicalizes
    ],
)
def test_fit_recovers_a_rotated_gaussian(params) -> None:
    amp, cy, cx, s1, s2, theta, off = params
    z = _gauss_map(41, 45, *params)
    z = z + np.random.default_rng(0).normal(0, 0.002 * amp, z.shape)
    fit = fit_gaussian(torch.from_numpy(z))
    assert fit.success
    assert abs(fit.centre_y - cy) < 0.5 and abs(fit.centre_x - cx) < 0.5
    major, minor = max(s1, s2), min(s1, s2)
    major_theta = theta if s1 >= s2 else theta + math.pi / 2
    assert fit.sigma_major == pytest.approx(major, rel=0.05)
    assert fit.sigma_minor == pytest.approx(minor, rel=0.05)
    assert math.degrees(_angle_diff(fit.theta, major_theta)) < 3
    assert -math.pi / 2 < fit.theta <= math.pi / 2
    assert fit.amplitude == pytest.approx(amp, rel=0.05)
    assert fit.offset == pytest.approx(off, abs=0.05 * amp)
    mask = gaussian_mask(fit, z.shape)
    assert mask.shape == z.shape and mask.max().item() == 1.0 and mask.min().item() >= 0.0
    expected = (z - off) / amp
    assert np.abs(mask.numpy() - expected / expected.max()).max() < 0.05


def test_fit_of_all_zero_map_is_flagged_and_mask_is_ones() -> None:
    fit = fit_gaussian(torch.zeros(20, 24))
    assert not fit.success
    assert not any(math.isnan(v) for v in (fit.amplitude, fit.centre_y, fit.centre_x, fit.sigma_major, fit.sigma_minor, fit.theta, fit.offset))
    assert torch.equal(gaussian_mask(fit, (20, 24)), torch.ones(20, 24))
    assert torch.equal(rf_mask(torch.zeros(20, 24)), torch.ones(20, 24))
    assert torch.equal(rf_mask(torch.full((8, 8), 3.0)), torch.ones(8, 8))  # constant: no peak either


def test_fit_of_single_pixel_map_has_no_nans() -> None:
    z = torch.zeros(15, 17)
    z[4, 11] = 2.5
    fit = fit_gaussian(z)
    values = (fit.amplitude, fit.centre_y, fit.centre_x, fit.sigma_major, fit.sigma_minor, fit.theta, fit.offset)
    assert all(math.isfinite(v) for v in values)
    assert abs(fit.centre_y - 4) < 0.5 and abs(fit.centre_x - 11) < 0.5
    mask = rf_mask(z)
    assert torch.isfinite(mask).all() and mask.max().item() == 1.0
    assert tuple(torch.nonzero(mask == mask.max())[0].tolist()) == (4, 11)


def test_mask_of_far_off_centre_is_finite_with_max_one() -> None:
    fit = GaussianFit(1.0, -500.0, 900.0, 2.0, 1.0, 0.3, 0.0, True)
    mask = gaussian_mask(fit, 16)
    assert torch.isfinite(mask).all() and mask.max().item() == 1.0


def test_fit_rejects_nan_maps() -> None:
    z = torch.zeros(5, 5)
    z[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fit_gaussian(z)


# --------------------------------------------------------------------------
# Gradient maps
# --------------------------------------------------------------------------


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _radius(m: torch.Tensor) -> float:
    """RMS distance of the map's mass from its centroid."""
    h, w = m.shape
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    p = m.double() / m.sum()
    cy, cx = (p * yy).sum(), (p * xx).sum()
    return float(((p * ((yy - cy) ** 2 + (xx - cx) ** 2)).sum()).sqrt())


def test_layer_maps_are_centred_inside_the_box_and_grow_with_depth(narrow: nn.Module) -> None:
    size = 48
    m1 = rf_map(narrow, "layer1", size, n_samples=8, batch_size=8, generator=_seeded(), plan=None)
    m3 = rf_map(narrow, "layer3", size, n_samples=8, batch_size=8, generator=_seeded(), plan=None)
    assert m1.shape == (size, size) and m1.dtype == torch.float32
    y0, y1, x0, x1 = centre_input_box(narrow, "layer1", size)
    assert m1[y0:y1, x0:x1].sum() / m1.sum() > 0.999  # exactly 1 up to rounding: the gradient is 0 elsewhere
    # concentrated around the centre unit's pixel (23, 23): most mass within 3 px
    assert m1[20:27, 20:27].sum() / m1.sum() > 0.5
    flat = torch.argmax(m1).item()
    assert abs(flat // size - 23) <= 2 and abs(flat % size - 23) <= 2
    assert _radius(m3) > 1.5 * _radius(m1)
    # The default crop path gives the same map.
    m1_crop = rf_map(narrow, "layer1", size, n_samples=8, batch_size=8, generator=_seeded())
    torch.testing.assert_close(m1_crop, m1, rtol=1e-4, atol=1e-9)


def _reference_unit_map(model, layer, size, n_samples, unit, seed, reduce) -> torch.Tensor:
    """Straightforward loop: one image, one unit, one backward at a time."""
    from protoscope.data.datasets import IMAGENET_MEAN, IMAGENET_STD

    gen = _seeded(seed)
    noise = torch.rand(n_samples, 3, size, size, generator=gen)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    net = truncate(model, layer)
    total = torch.zeros(size, size, dtype=torch.float64)
    for i in range(n_samples):
        x = noise[i : i + 1].clone().requires_grad_(True)
        acts = net((x - mean) / std)[layer]
        cy, cx = studied(model, layer, size)
        (g,) = torch.autograd.grad(acts[0, unit, cy, cx], x)
        total += (g[0].pow(2).sum(0) if reduce == "square" else g[0].abs().mean(0)).double()
    return (total / n_samples).float()


@pytest.mark.parametrize("reduce", ["square", "abs"])
def test_per_unit_maps_match_a_loop_reference(narrow: nn.Module, reduce: str) -> None:
    size, n = 32, 6
    maps = rf_map(narrow, "layer2", size, n_samples=n, batch_size=4, units=[5, 0], generator=_seeded(7), reduce=reduce)
    assert maps.shape == (2, size, size)
    for k, unit in enumerate([5, 0]):
        ref = _reference_unit_map(narrow, "layer2", size, n, unit, 7, reduce)
        torch.testing.assert_close(maps[k], ref, rtol=1e-4, atol=1e-4 * ref.max().item())
    assert not torch.allclose(maps[0], maps[1])


def test_per_unit_maps_bound_and_resemble_the_layer_map(narrow: nn.Module) -> None:
    size, n = 32, 6
    per_unit = rf_map(narrow, "layer1", size, n_samples=n, batch_size=6, units="all", generator=_seeded(2))
    layer = rf_map(narrow, "layer1", size, n_samples=n, batch_size=6, generator=_seeded(2))
    assert per_unit.shape == (16, size, size)
    # The layer objective is the channel mean, so its gradient is the mean of the unit gradients and by
    # Jensen |mean g_u|^2 <= mean |g_u|^2 pixel by pixel: the layer map can never exceed the unit average.
    avg = per_unit.mean(0)
    assert (layer <= avg * (1 + 1e-4) + 1e-12).all()
    cos = torch.nn.functional.cosine_similarity(layer.flatten(), avg.flatten(), dim=0)
    assert cos > 0.8
    # A unit list and "all" agree on the same noise.
    two = rf_map(narrow, "layer1", size, n_samples=n, batch_size=6, units=[3, 9], generator=_seeded(2))
    torch.testing.assert_close(two, per_unit[[3, 9]])


def test_maps_are_deterministic_for_a_seeded_generator(narrow: nn.Module) -> None:
    a = rf_map(narrow, "layer2", 32, n_samples=5, batch_size=2, generator=_seeded(11), plan=None)
    b = rf_map(narrow, "layer2", 32, n_samples=5, batch_size=4, generator=_seeded(11), plan=None)
    c = rf_map(narrow, "layer2", 32, n_samples=5, batch_size=2, generator=_seeded(12), plan=None)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=0)  # the batch size does not change the samples
    assert not torch.allclose(a, c)


def test_rf_map_leaves_the_model_alone(narrow: nn.Module) -> None:
    narrow.train()
    try:
        rf_map(narrow, "layer1", 24, n_samples=2, generator=_seeded())
        assert narrow.training and narrow.layer1.training
        assert all(p.grad is None for p in narrow.parameters())
    finally:
        narrow.eval()


def test_plans_are_tied_to_their_image_size(narrow: nn.Module) -> None:
    plan = crop_plan(narrow, "layer1", 32)
    assert plan is not None and plan.image_size == (32, 32)
    with pytest.raises(ValueError, match="crop plan"):
        centre_activation(truncate(narrow, "layer1"), "layer1", torch.zeros(1, 3, 40, 40), plan)
    with pytest.raises(UserError, match="crop plan"):
        rf_map(narrow, "layer1", 40, n_samples=1, plan=plan)


def test_rf_map_errors(narrow: nn.Module) -> None:
    with pytest.raises(UserError, match="out of range"):
        rf_map(narrow, "layer1", 24, n_samples=2, units=[16])
    with pytest.raises(UserError, match="spatial"):
        rf_map(narrow, "fc", 24, n_samples=2, plan=None)
    with pytest.raises(UserError, match="reduce"):
        rf_map(narrow, "layer1", 24, n_samples=2, reduce="max")
    with pytest.raises(UserError, match="Unknown layer"):
        rf_map(narrow, "layer9", 24, n_samples=2)


# --------------------------------------------------------------------------
# The studied cell: the one whose receptive field is centred
# --------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["narrow", "full"])
@pytest.mark.parametrize("size", [32, 95, 96, 97])
def test_studied_cell_equals_the_closed_form_nearest_field(which: str, size: int, request) -> None:
    """Every cell of the map is a candidate in the closed form, only the middle ones in `unit_position`."""
    model = request.getfixturevalue(which)
    paths = NARROW_PATH if which == "narrow" else FULL_PATH
    for layer in ("layer1", "layer2", "layer3", "layer4"):
        out_hw = out_size(model, layer, size)
        expected = closed_form_cell(resnet_path(paths, layer), out_hw, size)
        found = unit_position(model, layer, size)
        assert (found.y, found.x) == expected, (which, size, layer)
        r, j, p_total = _recursion(resnet_path(paths, layer))
        if found.located:
            assert found.rf_centre[0] == expected[0] * j - p_total + (r - 1) / 2


def test_the_middle_cell_is_not_centred_on_a_small_resnet(narrow: nn.Module) -> None:
    """The issue #28 drift: on 32 px the middle cells of layer2-4 look at pixels 14, 12 and 8."""
    for layer, middle in (("layer2", 14.0), ("layer3", 12.0), ("layer4", 8.0)):
        found = unit_position(narrow, layer, 32)
        assert found.centred and found.rf_centre == (16.0, 16.0), layer
        r, j, p_total = _recursion(resnet_path(NARROW_PATH, layer))
        cell = (out_size(narrow, layer, 32)[0] - 1) // 2
        assert cell * j - p_total + (r - 1) / 2 == middle


def test_a_patch_grid_with_no_centred_patch_is_said_so() -> None:
    patches = nn.Conv2d(3, 4, 8, stride=8)  # 64 px -> 8x8 patches, centres 3.5 + 8 i: none at 31.5
    found = unit_position(nn.Sequential(patches), "0", 64)
    assert found.located and not found.centred and found.offset == (-4.0, -4.0)
    assert "no position has its receptive field centred" in found.describe("0")
