"""Transformation robustness: a forward that sees each image slightly moved, scaled and turned.

An image optimised through a fixed forward finds high-frequency patterns that excite the layer
only at those exact pixels (adversarial noise). Drawing a fresh small transform at every call —
reflect-pad, random rotation and scale, random shift, crop back — rewards only what survives
them, as lucid's ``transform.standard_transforms`` does for activation atlases. One transform per
call for the whole batch: it is one `affine_grid`, and every row still sees a different one per step.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

Forward = Callable[[torch.Tensor], torch.Tensor]  # images in [0, 1] -> a layer's activation (as engine.py's)


def robust_forward(forward: Forward, seed: int = 0, pad: int = 2, jitter: int = 2,
                   scales: tuple[float, float] = (0.95, 1.05), degrees: float = 5.0) -> Forward:
    """`forward` behind a random small affine transform of its input, drawn anew at every call."""
    draws = torch.Generator().manual_seed(int(seed))

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=draws))

    def transformed(images: torch.Tensor) -> torch.Tensor:
        n, _, h, w = images.shape
        x = F.pad(images, (pad, pad, pad, pad), mode="reflect") if pad else images
        angle, scale = math.radians(uniform(-degrees, degrees)), uniform(*scales)
        shift = [2 * round(uniform(-jitter, jitter)) / size for size in (x.shape[3], x.shape[2])]
        cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
        theta = torch.tensor([[cos, -sin, shift[0]], [sin, cos, shift[1]]], dtype=x.dtype, device=x.device)
        grid = F.affine_grid(theta.expand(n, 2, 3), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, padding_mode="reflection", align_corners=False)
        return forward(x[:, :, pad:pad + h, pad:pad + w])

    return transformed
