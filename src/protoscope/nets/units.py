"""What a unit of a layer is: one definition that every method reads activations through.

A layer's raw output has a *layout*:

    NCHW   a convolution's (batch, channels, height, width)
    NHWC   channels last (Swin's stages, some ConvNeXt blocks): (batch, height, width, channels)
    NTD    tokens (ViTs): (batch, tokens, features), `extra` class/register tokens first, then the
           patch grid row by row
    ND     one vector per image: (batch, features)

A *unit* is a channel or feature dimension; a *position* is a spatial cell or a patch token. Every
activation leaves `protoscope.nets.layers` *units first*: (batch, units, height, width) for the
first three (a token layer's patches laid out on their grid, so "the centre" is the centre patch
and a mean over space is the mean over patches, the class token kept apart), (batch, units) for
ND. Methods written for a convolution's channels then read the right axis on every layout, and a
method that needs positions refuses an ND layer in one line.

The layout is found from the output's shape at two input sizes (the unit axis is the one whose
length does not follow the image), from the model's own attributes for a ViT that takes one input
size only, and is declared by the user (`layouts`) where neither tells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import UserError

LAYOUTS = ("NCHW", "NHWC", "NTD", "ND")
MAX_EXTRA_TOKENS = 8  # a class token, a distillation token and registers (DINOv2 has 4)


@dataclass(frozen=True)
class Layout:
    """A layer's raw layout; for tokens, how many extra tokens come first and the patch size."""

    kind: str
    extra: int = 0
    patch: int = 0

    def units_first(self, a: torch.Tensor, layer: str, image: tuple[int, int]) -> torch.Tensor:
        """(B, units, H, W) — (B, units) for ND — from the raw activation `a` of an `image`-sized input."""
        expected = 2 if self.kind == "ND" else 3 if self.kind == "NTD" else 4
        if a.ndim != expected:
            raise UserError(f"Layer {layer!r} gives activations of shape {tuple(a.shape)}, not the {self.kind} layout "
                            f"declared or found for it; declare its layout (one of {', '.join(LAYOUTS)}).")
        if self.kind == "NHWC":
            return a.permute(0, 3, 1, 2)
        if self.kind == "NTD":
            rows, cols = image[0] // self.patch, image[1] // self.patch
            if a.shape[1] != self.extra + rows * cols:
                raise UserError(f"Layer {layer!r} gives {a.shape[1]} tokens, not {self.extra} extra + a {rows}x{cols} "
                                f"grid of {self.patch} px patches of the {image[0]}x{image[1]} image.")
            return a[:, self.extra:].transpose(1, 2).reshape(a.shape[0], a.shape[2], rows, cols)
        return a

    def extra_tokens(self, a: torch.Tensor) -> torch.Tensor:
        """(B, extra, D): a token layer's class/register tokens, which the patch grid leaves out."""
        return a[:, : self.extra]


def find_layout(layer: str, shape: tuple[int, ...], other: tuple[int, ...] | None, image: tuple[int, int],
                model_hint: dict | None = None, kind: str | None = None) -> Layout:
    """The layout of `layer` from its output `shape` at input size `image`, and `other`, its shape at
    another input size (None when the model takes one size only). `model_hint` is a ViT's own
    {"patch": p, "extra": n}; `kind` a user's declaration."""
    ndim = len(shape)
    if kind is not None and kind not in LAYOUTS:
        raise UserError(f"Unknown layout {kind!r} for layer {layer!r}; valid: {', '.join(LAYOUTS)}.")
    if kind is None:
        kind = "ND" if ndim == 2 else _spatial_kind(layer, shape, other) if ndim == 4 else \
            _token_kind(layer, shape, other) if ndim == 3 else None
    if kind is None:
        raise UserError(f"Layer {layer!r} gives activations of shape {tuple(shape)}: protoscope knows no unit for a "
                        f"{ndim}-d output; choose another layer.")
    if kind == "NTD":
        return _token_layout(layer, shape, image, model_hint or {})
    return Layout(kind)


def _spatial_kind(layer: str, shape, other) -> str:
    """NCHW or NHWC: the unit axis keeps its length when the image grows; the grid does not."""
    if other is not None and len(other) == 4:
        if shape[1] == other[1] and shape[3] != other[3]:
            return "NCHW"
        if shape[3] == other[3] and shape[1] != other[1]:
            return "NHWC"
    if shape[2] == shape[3] != shape[1]:  # one input size only: a square grid tells, where it is square
        return "NCHW"
    if shape[1] == shape[2] != shape[3]:
        return "NHWC"
    raise UserError(f"Cannot tell the channel axis of layer {layer!r} (output {tuple(shape)}): declare its layout, "
                    f"NCHW (channels first) or NHWC (channels last).")


def _token_kind(layer: str, shape, other) -> str:
    """A 3-d output is tokens (batch, tokens, features) unless the features are what follow the image."""
    if other is not None and len(other) == 3 and shape[1] == other[1] and shape[2] != other[2]:
        raise UserError(f"Layer {layer!r} gives (batch, channels, length) activations {tuple(shape)}; protoscope "
                        "reads 3-d outputs as tokens (batch, tokens, features). Choose another layer.")
    return "NTD"


def _token_layout(layer: str, shape, image: tuple[int, int], hint: dict) -> Layout:
    """Extra tokens and the patch grid: from the model's patch size where it has one, else the one
    square-patch grid that tiles the image with at most MAX_EXTRA_TOKENS tokens left over."""
    tokens, (h, w) = shape[1], image
    patches = [hint["patch"]] if "patch" in hint else [p for p in range(1, min(h, w) + 1) if h % p == 0 and w % p == 0]
    fits = [(tokens - (h // p) * (w // p), p) for p in patches if 0 <= tokens - (h // p) * (w // p) <= MAX_EXTRA_TOKENS]
    if "extra" in hint:
        fits = [(extra, p) for extra, p in fits if extra == hint["extra"]]
    if len(fits) != 1:
        side = math.isqrt(tokens)
        raise UserError(f"Cannot lay the {tokens} tokens of layer {layer!r} on a patch grid of the {h}x{w} image "
                        f"({'several grids fit' if fits else 'no grid fits'}; a {side}x{side} grid would leave "
                        f"{tokens - side * side}): declare the layout NTD with its patch size and extra tokens.")
    extra, patch = fits[0]
    return Layout("NTD", extra, patch)


def model_hint(model: torch.nn.Module) -> dict:
    """A ViT's own patch size and extra tokens, where it says them (torchvision's, timm's)."""
    hint = {}
    patch = getattr(model, "patch_size", None) or getattr(getattr(model, "patch_embed", None), "patch_size", None)
    if isinstance(patch, (tuple, list)):
        patch = patch[0] if len(set(patch)) == 1 else None
    if isinstance(patch, int):
        hint["patch"] = patch
    extra = getattr(model, "num_prefix_tokens", None)  # timm
    if extra is None and isinstance(getattr(model, "class_token", None), torch.Tensor):  # torchvision
        extra = 1
    if isinstance(extra, int):
        hint["extra"] = extra
    return hint
