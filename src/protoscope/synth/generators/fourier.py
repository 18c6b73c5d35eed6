"""The Fourier prior: a low-pass, 1/f-whitened image in a decorrelated colour basis.

Its own module because it carries its frequency bookkeeping (which ``rfft2``
coefficients the latent holds, their mirrors and weights) and the colour
constants it shares with nothing else.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Generator

# Square root of the colour correlation of ImageNet pixels (from an SVD), the
# published constants of lucid's ``color_correlation_svd_sqrt``.  Optimising
# in this decorrelated basis lets luminance and colour-opponent directions be
# learnt at comparable rates instead of being dominated by luminance.
_COLOR_CORRELATION_SVD_SQRT = (
    (0.26, 0.09, 0.02),
    (0.27, 0.00, -0.05),
    (0.27, -0.09, 0.03),
)


def _colour_matrix() -> Tensor:
    m = torch.tensor(_COLOR_CORRELATION_SVD_SQRT, dtype=torch.float32)
    # Like lucid: divide by the largest column norm, so no decorrelated
    # channel is amplified.
    return m / m.norm(dim=0).max()


class FourierGenerator(Generator):
    """Decorrelated-colour, 1/f-scaled Fourier image with a low-pass latent.

    Why: natural images have roughly 1/f amplitude spectra; parameterizing in
    that whitened basis makes gradient steps (and CMA-ES steps) act on all
    scales evenly, and dropping everything above ``cutoff`` both removes the
    high-frequency "adversarial" patterns and shrinks the search space from
    ``3 * size**2`` pixels to a few thousand numbers.

    The latent holds, per decorrelated colour channel, the real and imaginary
    parts of every *unique* ``rfft2`` coefficient whose radial frequency is at
    most ``cutoff`` cycles per image (the DC term is real only; Nyquist bins
    are excluded; the ``kx = 0`` column keeps ``ky > 0`` and its mirror is
    filled in by Hermitian symmetry).  Layout: ``[n, 3, reals..., imags...]``
    flattened.  Because ``cutoff`` is in cycles per image, ``latent_dim``
    depends only on it, not on ``size``:

    ======  ==========
    cutoff  latent_dim
    ======  ==========
    8       591
    10      951
    12      1323
    14      1839  (default)
    16      2391
    20      3771
    ======  ==========

    Coefficients are scaled by ``1 / max(f, 1) ** decay_power`` (``f`` in
    cycles per image) and then by one constant chosen so that a standard
    Gaussian latent gives decorrelated pixels of standard deviation exactly 1;
    ``sample()`` therefore starts at a sensible contrast.  Output is
    ``sigmoid(colour_matrix @ pixels)``, so a zero latent is flat grey (0.5).
    """

    def __init__(
        self,
        size: int = 96,
        cutoff: float = 14.0,
        decay_power: float = 1.0,
        decorrelate: bool = True,
        init_std: float = 1.0,
    ) -> None:
        super().__init__()
        size = int(size)
        if size < 2:
            raise ValueError(f"FourierGenerator size must be >= 2, got {size}")
        if not cutoff >= 0:
            raise ValueError(f"FourierGenerator cutoff must be >= 0 cycles per image, got {cutoff}")
        self.image_size = size
        self.cutoff = float(cutoff)
        self.decay_power = float(decay_power)
        self.decorrelate = bool(decorrelate)
        self.init_std = float(init_std)

        width = size // 2 + 1
        ky = torch.fft.fftfreq(size, d=1.0 / size)  # integers, cycles/image
        kx = torch.fft.rfftfreq(size, d=1.0 / size)
        radius = torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
        keep = radius <= self.cutoff
        if size % 2 == 0:  # Nyquist bins have no usable imaginary part
            keep &= ky[:, None].abs() != size / 2
            keep &= kx[None, :] != size / 2
        keep &= ~((kx[None, :] == 0) & (ky[:, None] < 0))  # mirror of ky > 0
        flat = torch.nonzero(keep.flatten()).flatten()
        # Put DC first so "reals then imags without DC" is a simple slice.
        flat = torch.cat([flat[flat == 0], flat[flat != 0]])
        m = flat.numel()
        self.n_coeffs = m
        self.latent_dim = 3 * (2 * m - 1)

        freq = radius.flatten()[flat]
        weight = 1.0 / freq.clamp(min=1.0) ** self.decay_power
        # Var(pixel) = w_dc^2 + 4 * sum(w_k^2) for unit-variance re/im parts
        # (each non-DC coefficient appears with its conjugate: 2 Re(c e^{i.})).
        var = weight[0] ** 2 + 4.0 * (weight[1:] ** 2).sum()
        weight = weight / var.sqrt()

        ky_idx, kx_idx = flat // width, flat % width
        on_axis = (kx_idx == 0) & (ky_idx != 0)  # need explicit mirrors
        mirror = ((-ky_idx[on_axis]) % size) * width  # (-ky, 0)
        self.register_buffer("index", flat, persistent=False)
        self.register_buffer("weight", weight.float(), persistent=False)
        self.register_buffer("mirror_src", torch.nonzero(on_axis).flatten(), persistent=False)
        self.register_buffer("mirror_dst", mirror, persistent=False)
        colour = _colour_matrix() if self.decorrelate else torch.eye(3)
        self.register_buffer("colour", colour, persistent=False)

    def render(self, z: Tensor) -> Tensor:
        n, m, size = z.shape[0], self.n_coeffs, self.image_size
        width = size // 2 + 1
        z = z.reshape(n, 3, 2 * m - 1)
        w = self.weight.to(z.dtype)
        re = z[..., :m] * w
        im = torch.cat([z.new_zeros(n, 3, 1), z[..., m:]], dim=-1) * w
        spec_re = z.new_zeros(n, 3, size * width)
        spec_im = z.new_zeros(n, 3, size * width)
        spec_re = spec_re.index_copy(-1, self.index, re)
        spec_im = spec_im.index_copy(-1, self.index, im)
        if self.mirror_src.numel():
            # Hermitian symmetry of the kx = 0 column: X(-ky, 0) = conj X(ky, 0).
            spec_re = spec_re.index_copy(-1, self.mirror_dst, re[..., self.mirror_src])
            spec_im = spec_im.index_copy(-1, self.mirror_dst, -im[..., self.mirror_src])
        spec = torch.complex(spec_re, spec_im).reshape(n, 3, size, width)
        # norm="forward": no 1/N on the inverse, the unit-std scale is in w.
        pixels = torch.fft.irfft2(spec, s=(size, size), norm="forward")
        rgb = torch.einsum("ij,njhw->nihw", self.colour.to(pixels.dtype), pixels)
        return torch.sigmoid(rgb)

    def encode(self, images: Tensor) -> Tensor:
        """The latent of the image's low-pass part: the inverse of `render` on the kept coefficients
        (the sigmoid and colour basis undone, then the coefficients over their weights)."""
        m, n = self.n_coeffs, len(images)
        logits = torch.logit(images.float().clamp(1e-3, 1 - 1e-3))
        pixels = torch.einsum("ij,njhw->nihw", torch.linalg.inv(self.colour.float()), logits)
        spec = torch.fft.rfft2(pixels, norm="forward").reshape(n, 3, -1)[..., self.index]
        w = self.weight.float()
        return torch.cat([spec.real / w, spec.imag[..., 1:] / w[1:]], dim=-1).reshape(n, -1)

    def extra_repr(self) -> str:
        return (
            super().extra_repr()
            + f", cutoff={self.cutoff:g}, decay_power={self.decay_power:g}, decorrelate={self.decorrelate}"
        )
