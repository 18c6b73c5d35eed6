"""Crop planning: which input pixels the centre unit can see, and a crop that computes it exactly.

Synthesis only needs the centre unit of a layer, so evaluating the network on
the part of the image that unit depends on (its theoretical receptive field,
read off the positive surrogate of `surrogate.py`) gives the same value for a
fraction of the cost. A crop is only exact if it starts on the layer's stride
grid, so the plan is aligned and then checked before it is used.

Boxes are half-open ``(y0, y1, x0, x1)`` in input pixels: rows ``y0 .. y1 - 1``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import UserError
from ..nets.layers import truncate
from .objectives import centre_index
from .position import surrogate_net, unit_position

__all__ = ["centre_input_box", "CropPlan", "crop_plan", "centre_activation"]


def _size2(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``96`` or ``(96, 128)`` -> ``(H, W)``."""
    if isinstance(image_size, (int, np.integer)):
        h = w = int(image_size)
    else:
        h, w = (int(v) for v in image_size)
    if h < 1 or w < 1:
        raise UserError(f"image_size must be positive, got {image_size!r}")
    return h, w


def _spatial(acts: Tensor, layer: str) -> Tensor:
    if acts.ndim != 4:
        raise UserError(
            f"Layer {layer!r} gives activations of shape {tuple(acts.shape)}; a receptive field "
            "needs a spatial layer with output [batch, channels, height, width]."
        )
    return acts


def _supports(out: Tensor, x: Tensor, positions: list[tuple[int, int]]) -> list[Tensor]:
    """For each output position, the boolean input map where the gradient is non-zero."""
    result = []
    for k, (py, px) in enumerate(positions):
        (g,) = torch.autograd.grad(out[:, :, py, px].sum(), x, retain_graph=k + 1 < len(positions))
        result.append(g.abs().sum(dim=(0, 1)) > 0)
    return result


def _bbox(mask: Tensor) -> tuple[int, int, int, int]:
    rows = torch.nonzero(mask.any(1)).flatten()
    cols = torch.nonzero(mask.any(0)).flatten()
    if rows.numel() == 0:
        raise UserError("The centre unit does not depend on any input pixel.")
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


class _Geometry:
    """Everything the theoretical receptive field tells about one layer at one image size, for the
    map cell `position` (default: `position.unit_position`'s, the one whose field is centred)."""

    @torch.enable_grad()
    def __init__(self, model: nn.Module, layer: str, image_size, seed: int = 0,
                 position: tuple[int, int] | None = None):
        h, w = _size2(image_size)
        self.layer, self.size = layer, (h, w)
        self.net, out, x = surrogate_net(model, layer, h, w, seed)
        self.out_size = (out.shape[2], out.shape[3])
        if position is None:
            found = unit_position(model, layer, (h, w))
            position = (found.y, found.x)
        cy, cx = self.centre = tuple(position)
        oh, ow = self.out_size
        if not (0 <= cy < oh and 0 <= cx < ow):
            raise UserError(f"Position {position} is outside layer {layer!r}'s {oh}x{ow} map.")
        positions = [(cy, cx)]
        neighbours = {}
        for key, (py, px) in {"up": (cy - 1, cx), "down": (cy + 1, cx), "left": (cy, cx - 1), "right": (cy, cx + 1)}.items():
            if 0 <= py < oh and 0 <= px < ow:
                neighbours[key] = len(positions)
                positions.append((py, px))
        masks = _supports(out, x, positions)
        self.mask = masks[0]
        self.box = _bbox(masks[0])
        boxes = {key: _bbox(masks[i]) for key, i in neighbours.items()}
        self.stride = (
            self._stride(self.box[0], self.box[1], h, boxes.get("up"), boxes.get("down"), axis=0),
            self._stride(self.box[2], self.box[3], w, boxes.get("left"), boxes.get("right"), axis=1),
        )

    @staticmethod
    def _stride(start, stop, length, before, after, axis) -> int | None:
        """Total stride along one axis, from the shift between neighbouring units' fields.

        Exact where the shifted edge is inside the image (not clipped); None if
        no unclipped edge is available (then this axis is not cropped).
        """
        i = 2 * axis
        if start > 0 and after is not None:
            return after[i] - start
        if stop < length and before is not None:
            return stop - before[i + 1]
        return None


def centre_input_box(model: nn.Module, layer: str, image_size: int | Sequence[int],
                     position: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
    """The input pixels that can influence the studied unit of `layer` (at `position`, default
    `unit_position`'s): ``(y0, y1, x0, x1)``, half-open.

    This is the support of the theoretical receptive field clipped to the
    image, computed exactly for any CNN as the support of the gradient of the
    centre unit (all channels) in a positive float64 surrogate of the network
    (``surrogate._positive_surrogate``), so strides, paddings, max-pools and
    residual/downsample branches are handled without a per-architecture
    formula.  Depends on the architecture only, never on the weights.
    Caveat: operations called functionally inside a custom ``forward``
    (``F.max_pool2d``, ``torch.clamp``) are not replaced in the surrogate.
    """
    return _Geometry(model, layer, image_size, position=position).box


@dataclass(frozen=True)
class CropPlan:
    """Evaluate the net on ``images[:, :, y0:y1, x0:x1]`` and read output position ``(out_y, out_x)``.

    That value equals the full image's centre unit exactly (up to float
    rounding): the crop contains the whole theoretical receptive field, and
    its top-left corner is a multiple of the layer's total stride, so every
    conv/pool window in the crop falls on the same grid as in the full image.
    ``full_centre`` is the centre position in the full-size output, ``box``
    the receptive-field box the crop contains, ``stride`` the layer's total
    stride per axis (None for an axis that is not cropped and whose stride
    could not be read off) and ``image_size`` the full input's (H, W).
    """

    y0: int
    y1: int
    x0: int
    x1: int
    out_y: int
    out_x: int
    full_centre: tuple[int, int]
    box: tuple[int, int, int, int]
    stride: tuple[int | None, int | None]
    image_size: tuple[int, int]

    def crop(self, images: Tensor) -> Tensor:
        """The input region to evaluate: ``images[..., y0:y1, x0:x1]``."""
        return images[..., self.y0 : self.y1, self.x0 : self.x1]

    @property
    def fraction(self) -> float:
        """Share of the full image's pixels the crop keeps (a proxy for the compute kept)."""
        h, w = self.image_size
        return (self.y1 - self.y0) * (self.x1 - self.x0) / float(h * w)


def _axis_crop(start: int, stop: int, length: int, stride: int | None, centre: int) -> tuple[int, int, int]:
    """(crop start, crop stop, centre position in the crop's output) along one axis."""
    if (start == 0 and stop == length) or stride is None or stride <= 0:
        return 0, length, centre
    s0 = (start // stride) * stride
    return s0, stop, centre - s0 // stride


@torch.no_grad()
def _check_plan(net: nn.Module, layer: str, x: Tensor, plan: CropPlan, rtol: float = 1e-9) -> bool:
    full = net(x)[layer]
    cy, cx = plan.full_centre
    ref = full[:, :, cy, cx]
    part = net(plan.crop(x))[layer]
    if not (0 <= plan.out_y < part.shape[2] and 0 <= plan.out_x < part.shape[3]):
        return False
    got = part[:, :, plan.out_y, plan.out_x]
    scale = ref.abs().max().clamp_min(1e-300)
    return bool(((got - ref).abs().max() <= rtol * scale).item())


def crop_plan(model: nn.Module, layer: str, image_size: int | Sequence[int], verify: bool = True,
              position: tuple[int, int] | None = None) -> CropPlan | None:
    """A stride-aligned crop computing the studied unit of `layer` (at `position`, default
    `unit_position`'s) exactly; None if it would not save anything.

    An axis is cropped only where the receptive-field box leaves part of the
    image out and the total stride can be read off the geometry; the crop
    starts at the box start rounded down to a multiple of the stride and ends
    at the box end.  With ``verify`` (default) the plan is checked before it
    is returned: the crop must reproduce the full centre unit (all channels)
    to 1e-9 relative in the positive surrogate with random positive weights
    (where no unit is ever zero, so any misalignment shows) and in a float64
    copy of the real network; if either check fails the function warns and
    returns None (evaluate the full image), never a wrong plan.
    """
    geo = _Geometry(model, layer, image_size, position=position)
    h, w = geo.size
    y0, y1, x0, x1 = geo.box
    cy, cx = geo.centre
    a0, a1, oy = _axis_crop(y0, y1, h, geo.stride[0], cy)
    b0, b1, ox = _axis_crop(x0, x1, w, geo.stride[1], cx)
    if (a0, a1, b0, b1) == (0, h, 0, w):
        return None
    plan = CropPlan(a0, a1, b0, b1, oy, ox, (cy, cx), geo.box, geo.stride, (h, w))
    if verify:
        gen = torch.Generator().manual_seed(1)
        x = 0.5 + torch.rand(2, 3, h, w, generator=gen, dtype=torch.float64)
        ok = _check_plan(geo.net, layer, x, plan, rtol=1e-9)
        if ok:  # the real net, in its own dtype and device (float32: a looser tolerance)
            was_training = model.training
            try:
                param = next(iter(model.parameters()), None)
                dev = param.device if param is not None else torch.device("cpu")
                dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
                real = torch.randn(2, 3, h, w, generator=gen).to(dev, dtype)
                ok = _check_plan(truncate(model, layer), layer, real, plan, rtol=1e-3 if dtype != torch.float64 else 1e-9)
            finally:
                model.train(was_training)
        if not ok:
            warnings.warn(
                f"crop_plan: the stride-aligned crop {plan.y0}:{plan.y1}, {plan.x0}:{plan.x1} does not reproduce "
                f"the centre unit of {layer!r}; falling back to the full image.",
                RuntimeWarning,
                stacklevel=2,
            )
            return None
    return plan


def centre_activation(net: nn.Module, layer: str, images: Tensor, plan: CropPlan | None,
                      position: tuple[int, int] | None = None) -> Tensor:
    """All channels of the full image's studied unit, ``(B, C)``: at the plan's position through the
    crop when `plan` is given, else at `position` (default: the map's middle cell, `centre_index`).

    `net` is the truncated network (``truncate(model, layer)``) and `images`
    its (normalized) input at the full size the plan was made for.
    """
    if plan is not None and tuple(images.shape[-2:]) != tuple(plan.image_size):
        raise ValueError(f"images are {tuple(images.shape[-2:])} but the crop plan is for {tuple(plan.image_size)}")
    if plan is None:
        acts = _spatial(net(images)[layer], layer)
        y, x = position or centre_index(acts.shape[2], acts.shape[3])
        return acts[:, :, y, x]
    acts = _spatial(net(plan.crop(images))[layer], layer)
    return acts[:, :, plan.out_y, plan.out_x]
