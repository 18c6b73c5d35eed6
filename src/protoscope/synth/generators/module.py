"""A user's own ``nn.Module`` as a prior, without subclassing `Generator`."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from protoscope.errors import UserError

from .base import Generator


class ModuleGenerator(Generator):
    """Wrap any ``nn.Module`` mapping ``[n, latent_dim]`` to images.

    Why: lets users bring their own prior (a VAE decoder, another GAN) without
    subclassing.  The module's output is mapped affinely from
    ``output_range`` to [0, 1] and clamped; 1-channel output is repeated to
    RGB.  ``image_size`` is probed with one zero latent if not given.
    """

    def __init__(
        self,
        module: nn.Module | Callable[[Tensor], Tensor],
        latent_dim: int,
        image_size: int | None = None,
        output_range: tuple[float, float] = (0.0, 1.0),
        init_std: float = 1.0,
    ) -> None:
        super().__init__()
        if not callable(module):
            raise UserError(f"ModuleGenerator needs a callable module, got {type(module).__name__}")
        latent_dim = int(latent_dim)
        if latent_dim < 1:
            raise ValueError(f"ModuleGenerator latent_dim must be >= 1, got {latent_dim}")
        lo, hi = (float(x) for x in output_range)
        if not hi > lo:
            raise ValueError(f"ModuleGenerator output_range must be (low, high) with high > low, got {output_range}")
        self.module = module
        self.latent_dim = latent_dim
        self.output_range = (lo, hi)
        self.init_std = float(init_std)
        self._image_size = None if image_size is None else int(image_size)

    @property
    def image_size(self) -> int:  # type: ignore[override]
        if self._image_size is None:
            with torch.no_grad():
                out = self.forward(torch.zeros(1, self.latent_dim, device=self.device))
            self._image_size = int(out.shape[-1])
        return self._image_size

    def render(self, z: Tensor) -> Tensor:
        out = self.module(z)
        if not isinstance(out, Tensor) or out.ndim != 4 or out.shape[1] not in (1, 3) or out.shape[0] != z.shape[0]:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise UserError(
                f"ModuleGenerator: the wrapped module must return images [n, 3, H, W] (or [n, 1, H, W]) "
                f"for latents [n, {self.latent_dim}]; got {shape} for n={z.shape[0]}"
            )
        if out.shape[-1] != out.shape[-2]:
            raise UserError(f"ModuleGenerator: images must be square, got {tuple(out.shape[-2:])}")
        if out.shape[1] == 1:
            out = out.expand(-1, 3, -1, -1)
        lo, hi = self.output_range
        if (lo, hi) != (0.0, 1.0):
            out = (out - lo) / (hi - lo)
        return out.clamp(0.0, 1.0)

    def extra_repr(self) -> str:
        size = self._image_size if self._image_size is not None else "?"
        return f"latent_dim={self.latent_dim}, image_size={size}, output_range={self.output_range}, init_std={self.init_std:g}"
