"""The contract every image prior obeys, so the search code never needs to know which one it drives.

A generator maps latents ``[n, latent_dim]`` to RGB images ``[n, 3, H, W]`` in
``[0, 1]``, differentiably, and draws starting latents at its own scale. The
shape check lives here so that every prior rejects a wrong latent the same way.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Generator(nn.Module):
    """Base class: maps latents ``[n, latent_dim]`` to RGB images in [0, 1].

    Subclasses set ``latent_dim``, ``image_size`` and ``init_std`` and
    implement :meth:`render`; :meth:`forward` validates the latent first so
    that every generator fails the same, readable way on a wrong shape.
    """

    latent_dim: int
    image_size: int
    #: Standard deviation of the Gaussian that :meth:`sample` draws from.
    init_std: float = 1.0

    @property
    def device(self) -> torch.device:
        """The device the generator's tensors live on (CPU if it has none)."""
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """``n`` starting latents, ``init_std * N(0, 1)``, float32.

        The numbers are drawn on the *random generator's* device and then
        moved, so a seeded ``torch.Generator`` gives the same latents whether
        the search later runs on CPU or GPU.
        """
        n = int(n)
        if n < 0:
            raise ValueError(f"sample() needs n >= 0, got {n}")
        target = torch.device(device) if device is not None else self.device
        draw_on = generator.device if generator is not None else target
        z = torch.randn(n, self.latent_dim, generator=generator, device=draw_on)
        return (z * self.init_std).to(target)

    def encode(self, images: Tensor) -> Tensor:
        """Latents whose rendering is as near `images` ([n, 3, S, S] in [0, 1]) as the prior allows:
        the engine starts from natural images with them. A prior that cannot invert says so."""
        raise NotImplementedError(f"The {type(self).__name__} prior cannot start from natural images "
                                  "(it has no encoder); use fourier, maco or pixel.")

    def check_latent(self, z: Tensor) -> None:
        """Raise a clear ValueError unless ``z`` is ``[n, latent_dim]``."""
        if not isinstance(z, Tensor):
            raise ValueError(f"{type(self).__name__} expects a torch.Tensor latent, got {type(z).__name__}")
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(
                f"{type(self).__name__} expects latents of shape [n, {self.latent_dim}], "
                f"got {tuple(z.shape)}"
            )
        if not z.is_floating_point():
            raise ValueError(f"{type(self).__name__} expects a floating-point latent, got {z.dtype}")

    def forward(self, z: Tensor) -> Tensor:
        self.check_latent(z)
        return self.render(z)

    def render(self, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Subclass hook: the image batch for an already-validated latent."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}, image_size={self.image_size}, init_std={self.init_std:g}"
