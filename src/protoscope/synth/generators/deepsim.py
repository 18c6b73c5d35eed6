"""The DeePSim fc6 GAN prior: its network, the weight file it loads, and the Caffe output convention.

The weights are not shipped, so everything about finding, checking and
converting them sits next to the architecture they must fit.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from protoscope.errors import UserError
from protoscope.nets.checkpoints import check_fits, load_state

from .base import Generator

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
