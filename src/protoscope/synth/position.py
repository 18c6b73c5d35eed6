"""Where on a layer's map its units are studied: the position whose receptive field is centred in the image.

A unit is one channel at one position. The middle cell of the map, ((H-1)//2, (W-1)//2), is not
the one that looks at the middle of the image: with stride-2 convolutions each cell's field starts
one stride further along, so on a 32 px ResNet layer4's 4×4 map cell 1 looks at pixel 8, and its
prototype sits in the upper-left corner (issue #28). This module finds, for one architecture,
layer and image size, the cell whose theoretical receptive field is nearest the image centre, and
says when none is centred (e.g. 3×3 patches of 16 px on 224 px images: every patch is 8 px off).

The field's centre is the midpoint of the gradient support of a positive surrogate
(`surrogate.py`): exact for any wiring, weights play no part. A field larger than the image is
clipped; the surrogate then runs on a canvas padded by whole strides, where the field fits.
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..nets.layers import truncate
from .objectives import centre_index
from .surrogate import _positive_surrogate


@dataclass(frozen=True)
class UnitPosition:
    """The map cell (y, x) a layer's units are studied at, and where its receptive field is centred.

    `rf_centre` and `image_centre` are in input pixels; `located` is False when the field's centre
    could not be found (it spans the whole padded canvas: global attention, or a stride that does
    not divide the image), and then (y, x) is the map's middle cell."""

    y: int
    x: int
    rf_centre: tuple[float, float]
    image_centre: tuple[float, float]
    located: bool = True

    @property
    def offset(self) -> tuple[float, float]:
        """Pixels from the image centre to the field's centre, (down, right)."""
        return self.rf_centre[0] - self.image_centre[0], self.rf_centre[1] - self.image_centre[1]

    @property
    def centred(self) -> bool:
        """The field's centre is within half a pixel of the image's (the nearest a pixel grid allows)."""
        return self.located and max(abs(v) for v in self.offset) <= 0.5

    def describe(self, layer: str) -> str:
        if self.centred:
            return f"{layer}: position ({self.y}, {self.x}), receptive field centred"
        if not self.located:
            return f"{layer}: position ({self.y}, {self.x}), receptive field spans the whole image (no centre to find)"
        dy, dx = self.offset
        return (f"{layer}: no position has its receptive field centred; the nearest, ({self.y}, {self.x}), "
                f"is {dy:+.1f} px down and {dx:+.1f} px right of the image centre")


def surrogate_net(model: nn.Module, layer: str, h: int, w: int, seed: int = 0) -> tuple[nn.Module, Tensor, Tensor]:
    """(truncated positive surrogate, its output at `layer`, the input that needs grad) for an h×w image.
    The one-channel surrogate is cheap; it fails only on graphs that hard-code channel counts, and
    then the full-width one is used."""
    for collapse in (True, False):
        gen = torch.Generator().manual_seed(seed)
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # torch.fx prints failing traces
                net = truncate(_positive_surrogate(model, gen, collapse=collapse), layer)
                x = (0.5 + torch.rand(1, 3, h, w, generator=gen, dtype=torch.float64)).requires_grad_(True)
                out = net(x)[layer]
        except UserError:
            raise
        except Exception:
            if not collapse:
                raise
            continue
        if out.ndim != 4:
            raise UserError(f"Layer {layer!r} gives activations of shape {tuple(out.shape)}; a unit's position "
                            "needs a spatial layer with output [batch, channels, height, width].")
        return net, out, x
    raise AssertionError("unreachable")


def _spans(out: Tensor, x: Tensor, cells: list[tuple[int, int]]) -> list[tuple[int, int, int, int]]:
    """Each cell's gradient support as a half-open box (y0, y1, x0, x1) in the input."""
    boxes = []
    for k, (py, px) in enumerate(cells):
        (g,) = torch.autograd.grad(out[:, :, py, px].sum(), x, retain_graph=k + 1 < len(cells))
        support = g.abs().sum(dim=(0, 1)) > 0
        rows, cols = support.any(1).nonzero().flatten(), support.any(0).nonzero().flatten()
        if rows.numel() == 0:
            raise UserError("A position of the layer does not depend on any input pixel.")
        boxes.append((int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1))
    return boxes


@torch.enable_grad()  # the fields are gradient supports, also when called under no_grad
def unit_position(model: nn.Module, layer: str, image_size: int | tuple[int, int]) -> UnitPosition:
    """The cell of `layer`'s map whose receptive field is nearest the centre of an `image_size` image.

    Candidates are the (up to four) middle cells. Depends on the architecture only."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else (int(image_size[0]), int(image_size[1]))
    net, out, x = surrogate_net(model, layer, h, w)
    oh, ow = out.shape[2], out.shape[3]
    cells = sorted({(cy, cx) for cy in {(oh - 1) // 2, oh // 2} for cx in {(ow - 1) // 2, ow // 2}})
    centre = ((h - 1) / 2, (w - 1) / 2)
    found = _field_centres(net, layer, out, x, cells, h, w)
    if found is None:
        y, x_ = centre_index(oh, ow)
        return UnitPosition(y, x_, centre, centre, located=False)
    best = min(range(len(cells)), key=lambda i: (abs(found[i][0] - centre[0]) + abs(found[i][1] - centre[1]), i))
    return UnitPosition(cells[best][0], cells[best][1], found[best], centre)


def _field_centres(net, layer, out, x, cells, h, w) -> list[tuple[float, float]] | None:
    """Each cell's field centre in image pixels, or None when the fields cannot be located."""
    boxes = _spans(out, x, cells)
    if all(0 < b[0] and b[1] < h and 0 < b[2] and b[3] < w for b in boxes):
        return [((b[0] + b[1] - 1) / 2, (b[2] + b[3] - 1) / 2) for b in boxes]
    oh, ow = out.shape[2], out.shape[3]
    sy, sx = _stride(h, oh), _stride(w, ow)
    for times in (1, 2, 4, 8):  # pad by whole strides, at least `times` image sizes each side
        py, px = times * sy * -(-h // sy), times * sx * -(-w // sx)
        if max(h + 2 * py, w + 2 * px) > _CANVAS:
            return None
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                centres = _padded_centres(net, layer, cells, (h, w), (oh, ow), (sy, sx), (py, px))
        except Exception:  # a model that takes one input size only (torchvision's ViT asserts it)
            return None
        if centres != "clipped":
            return centres
    return None


def _stride(length: int, cells: int) -> int:
    """A layer's total stride along an axis, guessed from the map's size (checked afterwards by the
    padded map's): exact when the cells divide the image, else the nearest power of two (97 px ->
    13 cells is stride 8)."""
    if length % cells == 0:
        return length // cells
    return 2 ** max(0, round(math.log2(length / cells)))


_CANVAS = 1024  # the largest padded canvas tried, in pixels per side: bounds the cost of a global field


def _padded_centres(net, layer, cells, size, out_size, stride, pad):
    """The cells' field centres measured on a canvas padded by `pad`; "clipped" when a field still
    reaches its edge, None when the map does not grow by whole cells (no fixed stride)."""
    (h, w), (oh, ow), (sy, sx), (py, px) = size, out_size, stride, pad
    x = (0.5 + torch.rand(1, 3, h + 2 * py, w + 2 * px, generator=torch.Generator().manual_seed(0),
                          dtype=torch.float64)).requires_grad_(True)
    big = net(x)[layer]
    if (big.shape[2], big.shape[3]) != (oh + 2 * py // sy, ow + 2 * px // sx):
        return None
    boxes = _spans(big, x, [(cy + py // sy, cx + px // sx) for cy, cx in cells])
    H, W = x.shape[2], x.shape[3]
    if any(b[0] == 0 or b[1] == H or b[2] == 0 or b[3] == W for b in boxes):
        return "clipped"
    return [((b[0] + b[1] - 1) / 2 - py, (b[2] + b[3] - 1) / 2 - px) for b in boxes]
