"""The pixel prior: the baseline the other priors are compared with."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Generator


class PixelGenerator(Generator):
    """Latent = a ``3 x L x L`` pre-sigmoid image, upsampled to ``size``.

    Why: the plainest prior, a baseline for the others.  A low ``latent_size``
    (e.g. 16 → 768 dims) makes it a smooth, CMA-ES-sized search space; the
    full-resolution default (``latent_size=None``) is the classic pixel
    parameterization for gradient ascent.  Bilinear upsampling uses
    ``align_corners=False``; the output is ``sigmoid(image)`` so a zero latent
    is flat grey.
    """

    def __init__(self, size: int = 96, latent_size: int | None = None, init_std: float = 1.0) -> None:
        super().__init__()
        size = int(size)
        latent_size = size if latent_size is None else int(latent_size)
        if size < 1 or latent_size < 1:
            raise ValueError(f"PixelGenerator needs size and latent_size >= 1, got {size}, {latent_size}")
        if latent_size > size:
            raise ValueError(f"PixelGenerator latent_size ({latent_size}) must not exceed size ({size})")
        self.image_size = size
        self.latent_size = latent_size
        self.latent_dim = 3 * latent_size * latent_size
        self.init_std = float(init_std)

    def render(self, z: Tensor) -> Tensor:
        img = z.reshape(z.shape[0], 3, self.latent_size, self.latent_size)
        if self.latent_size != self.image_size:
            img = F.interpolate(img, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return torch.sigmoid(img)

    def encode(self, images: Tensor) -> Tensor:
        """The pre-sigmoid image, area-downsampled to the latent size."""
        x = images.float().clamp(1e-3, 1 - 1e-3)
        if self.latent_size != self.image_size:
            x = F.interpolate(x, size=(self.latent_size, self.latent_size), mode="area")
        return torch.logit(x).reshape(len(images), -1)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", latent_size={self.latent_size}"
