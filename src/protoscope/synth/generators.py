"""Image generators: latents in, images in [0, 1] out, one contract for all.

Prototype synthesis searches a latent space (batched CMA-ES, then Adam on the
latent) for the image that drives one unit hardest, for every unit of a layer
at once: row ``i`` of the latent batch belongs to unit ``i``.  The search code
must not care which image prior it is driving, so every generator here obeys
the same small contract (the idea of lucid/lucent's ``param`` module):

* ``latent_dim`` – length of one latent row;
* ``sample(n, generator=None, device=None)`` – ``n`` starting latents drawn at
  the scale that generator expects (``init_std`` times a standard Gaussian);
* ``forward(z)`` – ``[n, latent_dim]`` → ``[n, 3, H, W]`` RGB in ``[0, 1]``,
  differentiable in ``z``;
* ``image_size`` – ``H == W`` of the output.

Priors provided:

* :class:`FourierGenerator` – decorrelated colour, 1/f-scaled Fourier image
  whose latent is only the low-frequency coefficients (1839 dims by default);
* :class:`PixelGenerator` – a (possibly low-resolution, upsampled) pixel image;
* :class:`DeePSimFC6` – the DeePSim/"upconv" fc6 GAN of Dosovitskiy & Brox
  (2016) used by XDream; 4096-d latent, weights from a local file;
* :class:`ModuleGenerator` – any user ``nn.Module`` from latents to images.

:func:`make_generator` builds one by name for configs and the CLI.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from protoscope.errors import UserError, did_you_mean
from protoscope.nets.checkpoints import check_fits, load_state

__all__ = [
    "Generator",
    "FourierGenerator",
    "PixelGenerator",
    "DeePSimFC6",
    "ModuleGenerator",
    "make_generator",
    "sized_generator",
    "GENERATORS",
]


# --------------------------------------------------------------------------
# Base contract
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# Fourier (lucid-style) prior
# --------------------------------------------------------------------------

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

    def extra_repr(self) -> str:
        return (
            super().extra_repr()
            + f", cutoff={self.cutoff:g}, decay_power={self.decay_power:g}, decorrelate={self.decorrelate}"
        )


# --------------------------------------------------------------------------
# Pixel prior
# --------------------------------------------------------------------------


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

    def extra_repr(self) -> str:
        return super().extra_repr() + f", latent_size={self.latent_size}"


# --------------------------------------------------------------------------
# DeePSim fc6 ("upconv") GAN
# --------------------------------------------------------------------------

# Per-channel pixel mean (R, G, B, 0-255 scale) that the Caffe-trained
# generator's output is centred on; adding it back is how XDream and
# circuit_toolkit turn the raw output into a viewable image.
_DEEPSIM_RGB_MEAN = (123.0, 117.0, 104.0)

_DEEPSIM_HELP = (
    "DeePSim fc6 weights are not shipped with protoscope. Get the fc6 'upconv' "
    "generator of Dosovitskiy & Brox (2016) - e.g. the PyTorch port used by "
    "circuit_toolkit / ActMax-Optimizer-Dev (upconvGAN('fc6'), file "
    "upconvGAN_fc6.pt) - save it locally (ideally converted with "
    "safetensors.torch.save_file(state_dict, 'deepsim_fc6.safetensors')) and pass its "
    "path as weights_path."
)


class _DeePSimFC6Net(nn.Module):
    """The fc6 generator network; attribute names match the public state dicts.

    4096 → three 4096-wide linear layers → 256×4×4 → transposed convolutions
    (stride-2 ones double the size; the 3×3 stride-1 "conv" layers are also
    transposed convs in the original, which fixes their weight layout)
    → 3×256×256, every hidden layer followed by LeakyReLU(0.3).  Output: BGR,
    mean-subtracted, 0–255 scale (the Caffe convention).
    """

    # (name, in, out, kernel, stride, padding)
    DECONVS = (
        ("deconv5", 256, 256, 4, 2, 1),  # 4 -> 8
        ("conv5_1", 256, 512, 3, 1, 1),
        ("deconv4", 512, 256, 4, 2, 1),  # 8 -> 16
        ("conv4_1", 256, 256, 3, 1, 1),
        ("deconv3", 256, 128, 4, 2, 1),  # 16 -> 32
        ("conv3_1", 128, 128, 3, 1, 1),
        ("deconv2", 128, 64, 4, 2, 1),  # 32 -> 64
        ("deconv1", 64, 32, 4, 2, 1),  # 64 -> 128
        ("deconv0", 32, 3, 4, 2, 1),  # 128 -> 256
    )
    FCS = ("defc7", "defc6", "defc5")

    def __init__(self, device: torch.device | str | None = None) -> None:
        super().__init__()
        for name in self.FCS:
            setattr(self, name, nn.Linear(4096, 4096, device=device))
        for name, cin, cout, k, s, p in self.DECONVS:
            setattr(self, name, nn.ConvTranspose2d(cin, cout, k, stride=s, padding=p, device=device))

    def forward(self, z: Tensor) -> Tensor:
        h = z
        for name in self.FCS:
            h = F.leaky_relu(getattr(self, name)(h), 0.3)
        h = h.reshape(-1, 256, 4, 4)
        last = self.DECONVS[-1][0]
        for name, *_ in self.DECONVS:
            h = getattr(self, name)(h)
            if name != last:
                h = F.leaky_relu(h, 0.3)
        return h


def _normalise_keys(sd: dict[str, Tensor], expected: set[str]) -> dict[str, Tensor]:
    """Accept the key spellings seen in the wild: a ``G.`` prefix (whole
    upconvGAN module) and ``name.1.weight`` (an old Sequential export)."""
    if sd and all(k.startswith("G.") for k in sd):
        sd = {k[2:]: v for k, v in sd.items()}
    if set(sd) != expected:
        fixed = {k.replace(".1.", "."): v for k, v in sd.items()}
        if set(fixed) == expected:
            sd = fixed
    return sd


class DeePSimFC6(Generator):
    """DeePSim / "upconv" fc6 generator (Dosovitskiy & Brox 2016), as in XDream.

    Why: a GAN prior trained to invert AlexNet fc6 features gives natural-
    looking, object-like prototypes and a 4096-d space in which CMA-ES works
    well (Ponce et al. 2019; Wang & Ponce 2022).

    The architecture is built here; the weights come only from a local file
    (``weights_path``: ``.safetensors`` preferred, or a ``.pt``/``.pth`` state
    dict read with ``torch.load(weights_only=True)`` so no arbitrary pickle is
    executed).  ``weights_path=None`` is refused unless ``allow_random=True``
    (tests, smoke runs), which gives a seeded, variance-preserving random init.

    Output conversion (as circuit_toolkit's ``upconvGAN.visualize``): the raw
    output is BGR, mean-subtracted, in 0–255; we swap to RGB, add the pixel
    mean (123, 117, 104), clamp to [0, 255] and divide by 255, then resize
    (bilinear, antialiased) from 256 px to ``output_size``.  Note the clamp
    passes no gradient for saturated pixels, like the reference code.

    ``sample()`` draws ``N(0, 3^2)`` per dimension (``init_std=3``), the
    initial step size XDream-style CMA-ES uses around a zero code; such codes
    have norm ≈ 190.  The weights are frozen (``requires_grad=False``): only
    the latent is optimised.
    """

    RAW_SIZE = 256

    def __init__(
        self,
        weights_path: str | Path | None = None,
        output_size: int = 96,
        allow_random: bool = False,
        seed: int = 0,
        init_std: float = 3.0,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.latent_dim = 4096
        self.image_size = int(output_size)
        if self.image_size < 1:
            raise ValueError(f"DeePSimFC6 output_size must be >= 1, got {output_size}")
        self.init_std = float(init_std)
        # Built on the meta device: allocating and default-initialising three
        # 4096x4096 layers only to overwrite them would double the load cost.
        net = _DeePSimFC6Net(device="meta")
        if weights_path is None:
            if not allow_random:
                raise UserError("DeePSimFC6 needs weights_path (or allow_random=True for tests). " + _DEEPSIM_HELP)
            net = net.to_empty(device="cpu")
            self._random_init(net, seed)
            self.weights_path: Path | None = None
        else:
            path = Path(weights_path).expanduser()
            if not path.is_file():
                raise UserError(f"DeePSim fc6 weights file not found: {path}. " + _DEEPSIM_HELP)
            self._load_into(net, path)
            self.weights_path = path
        net.requires_grad_(False)
        net.eval()
        self.net = net
        self.register_buffer("rgb_mean", torch.tensor(_DEEPSIM_RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        if device is not None:
            self.to(device)

    @staticmethod
    def _random_init(net: _DeePSimFC6Net, seed: int) -> None:
        """Seeded He-style init (gain for LeakyReLU(0.3)), zero biases; the last
        layer is scaled so `sample()` latents give raw outputs of std ≈ 60 and random images
        visibly vary (default PyTorch init makes them a flat mean colour)."""
        g = torch.Generator().manual_seed(int(seed))
        gain = math.sqrt(2.0 / (1.0 + 0.3**2))
        with torch.no_grad():
            for name, mod in net.named_children():
                w = mod.weight
                if isinstance(mod, nn.Linear):
                    fan_in = w.shape[1]
                else:  # ConvTranspose2d weight [in, out, k, k]; each output
                    # sums over in * (k / stride)^2 taps.
                    fan_in = w.shape[0] * w.shape[2] * w.shape[3] / mod.stride[0] ** 2
                std = gain / math.sqrt(fan_in)
                if name == _DeePSimFC6Net.DECONVS[-1][0]:
                    std *= 12.0
                w.normal_(0.0, std, generator=g)
                mod.bias.zero_()

    @staticmethod
    def _load_into(net: _DeePSimFC6Net, path: Path) -> None:
        own = net.state_dict()
        sd = _normalise_keys(load_state(path), set(own))
        check_fits(sd, own, path, _DEEPSIM_HELP)
        sd = {k: v.detach().to(torch.float32).contiguous() for k, v in sd.items()}
        net.load_state_dict(sd, strict=True, assign=True)

    def raw(self, z: Tensor) -> Tensor:
        """The network's own output: ``[n, 3, 256, 256]`` BGR, mean-subtracted, 0–255."""
        self.check_latent(z)
        return self.net(z)

    def render(self, z: Tensor) -> Tensor:
        raw = self.net(z)
        rgb = raw.flip(1) + self.rgb_mean.to(raw.dtype)  # BGR -> RGB, un-centre
        img = rgb.clamp(0.0, 255.0) / 255.0
        if self.image_size != self.RAW_SIZE:
            img = F.interpolate(
                img, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                antialias=self.image_size < self.RAW_SIZE,
            ).clamp(0.0, 1.0)
        return img

    def state_dict_for_saving(self) -> dict[str, Tensor]:
        """The weights under the public key names (for ``safetensors`` export)."""
        return {k: v.detach().contiguous() for k, v in self.net.state_dict().items()}

    def save_weights(self, path: str | Path) -> None:
        """Write the weights as ``.safetensors`` (e.g. to convert a .pt file once)."""
        from safetensors.torch import save_file

        save_file({k: v.cpu() for k, v in self.state_dict_for_saving().items()}, str(path))

    def extra_repr(self) -> str:
        src = str(self.weights_path) if self.weights_path is not None else "random init"
        return super().extra_repr() + f", weights={src}"


# --------------------------------------------------------------------------
# Wrapper for user modules
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------

GENERATORS: dict[str, type[Generator]] = {
    "fourier": FourierGenerator,
    "pixel": PixelGenerator,
    "deepsim-fc6": DeePSimFC6,
}


def make_generator(name: str, **kwargs: Any) -> Generator:
    """Build a generator by name (``fourier``, ``pixel``, ``deepsim-fc6``).

    Unknown names and unknown options are :class:`UserError` listing the
    valid choices, since both usually come straight from a config or the CLI.
    """
    key = str(name).strip().lower().replace("_", "-")
    if key not in GENERATORS:
        raise UserError(f"Unknown generator {name!r}." + did_you_mean(str(name), sorted(GENERATORS)))
    cls = GENERATORS[key]
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    for option in kwargs:
        if option not in params:
            raise UserError(f"Generator {key!r} has no option {option!r}." + did_you_mean(option, params))
    return cls(**kwargs)


def sized_generator(name: str, image_size: int, options: dict | None = None) -> Generator:
    """`make_generator` making `image_size` images unless `options` set the size itself
    (`size`, or `output_size` for deepsim-fc6): what a study's `synth:` section and
    `protoscope.prototypes` build."""
    options = dict(options or {})
    size_key = "output_size" if str(name).strip().lower().replace("_", "-") == "deepsim-fc6" else "size"
    options.setdefault(size_key, image_size)
    return make_generator(name, **options)
