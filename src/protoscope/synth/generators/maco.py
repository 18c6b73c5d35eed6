"""The magnitude-constrained Fourier prior (after MACO, Fel et al. 2023): only the phase is searched.

A photograph's amplitude spectrum is much the same from image to image; what makes it this image
is mostly the phase. Fixing the amplitude to the mean spectrum of natural images and optimizing the
phase alone keeps every prototype at natural contrast per frequency, so the search cannot pile
energy into the high frequencies a network happens to like. MACO takes the spectrum from ImageNet;
here it comes from the study's own images (`magnitude_of`), so no pretrained weights or downloads
are needed, and a study of digits gets a digit spectrum.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Generator
from .fourier import _colour_matrix


def magnitude_of(images: Tensor) -> Tensor:
    """(3, S, S // 2 + 1): the mean amplitude of `images`' ``rfft2`` ([n, 3, S, S] in [0, 1]) in the
    decorrelated colour basis the prior renders in, around mid-grey."""
    centred = images.float() - 0.5
    pixels = torch.einsum("ij,njhw->nihw", torch.linalg.inv(_colour_matrix()), centred)
    return torch.fft.rfft2(pixels, norm="ortho").abs().mean(0)


class MacoGenerator(Generator):
    """Latent = the phase of every ``rfft2`` coefficient of each decorrelated colour channel; the
    amplitude is fixed to `magnitude` (`magnitude_of` the study's images).

    Rendering: ``irfft2(magnitude * exp(i * phase))`` per channel, back to RGB with the colour
    matrix, around mid-grey, through ``0.5 + 0.5 * tanh(2 x)`` (the identity near grey, so a
    natural image's contrast passes nearly unchanged, and a smooth bound at 0 and 1). `sample`
    draws phases uniformly (N(0, π) wrapped), so every starting image has the natural spectrum.
    """

    def __init__(self, size: int = 96, magnitude: Tensor | None = None, images: Tensor | None = None,
                 init_std: float = math.pi) -> None:
        super().__init__()
        size = int(size)
        if (magnitude is None) == (images is None):
            raise ValueError("The maco prior needs natural images' amplitude spectrum: images=... ([n, 3, S, S] "
                             "in [0, 1] or uint8; a study's evolve passes its own) or magnitude=magnitude_of(images).")
        if images is not None:
            images = torch.as_tensor(images)
            images = images.float() / 255 if images.dtype == torch.uint8 else images.float()
            magnitude = magnitude_of(torch.nn.functional.interpolate(images, size=(size, size), mode="area"))
        magnitude = torch.as_tensor(magnitude, dtype=torch.float32)
        if magnitude.shape != (3, size, size // 2 + 1):
            raise ValueError(f"maco magnitude must be (3, {size}, {size // 2 + 1}) for {size} px images, "
                             f"got {tuple(magnitude.shape)}")
        self.image_size, self.init_std = size, float(init_std)
        self.latent_dim = 3 * size * (size // 2 + 1)
        self.register_buffer("magnitude", magnitude, persistent=False)
        self.register_buffer("colour", _colour_matrix(), persistent=False)

    def render(self, z: Tensor) -> Tensor:
        size = self.image_size
        phase = z.reshape(len(z), 3, size, size // 2 + 1)
        spectrum = torch.polar(self.magnitude.to(z.dtype).expand_as(phase), phase)
        pixels = torch.fft.irfft2(spectrum, s=(size, size), norm="ortho")
        rgb = torch.einsum("ij,njhw->nihw", self.colour.to(pixels.dtype), pixels)
        return 0.5 + 0.5 * torch.tanh(2 * rgb)

    def encode(self, images: Tensor) -> Tensor:
        """The phases of `images`' spectra: rendered, they keep the images' layout at the mean amplitude."""
        centred = images.float() - 0.5
        pixels = torch.einsum("ij,njhw->nihw", torch.linalg.inv(self.colour.float()), centred)
        return torch.angle(torch.fft.rfft2(pixels, norm="ortho")).reshape(len(images), -1)
