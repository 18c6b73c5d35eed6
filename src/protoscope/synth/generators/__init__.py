"""Image generators: latents in, images in [0, 1] out, one contract for all.

The engine searches a latent space for every unit of a layer at once (row ``i``
of a latent batch belongs to unit ``i``) and must not care which image prior it
drives, so every prior implements the small contract of `base.Generator`
(lucid/lucent's ``param`` idea): ``latent_dim``, ``image_size``, ``init_std``,
``sample(n, generator, device)`` and a differentiable ``forward(z)``.

One prior per module:

* `fourier.FourierGenerator` – decorrelated colour, 1/f-scaled, low-pass Fourier image;
* `maco.MacoGenerator` – the phase of a Fourier image whose amplitude is natural images' (MACO);
* `pixel.PixelGenerator` – a (possibly low-resolution, upsampled) pixel image;
* `deepsim.DeePSimFC6` – the DeePSim/"upconv" fc6 GAN used by XDream (local weights);
* `module.ModuleGenerator` – any user ``nn.Module`` from latents to images;

and `registry.make_generator` / `registry.sized_generator` build one by name.
Every name is re-exported here, so ``from protoscope.synth.generators import X``
keeps working whichever file X lives in.
"""

from __future__ import annotations

from .base import Generator
from .deepsim import _DEEPSIM_HELP, _DEEPSIM_RGB_MEAN, DeePSimFC6, _DeePSimFC6Net, _normalise_keys
from .fourier import _COLOR_CORRELATION_SVD_SQRT, FourierGenerator, _colour_matrix
from .maco import MacoGenerator, magnitude_of
from .module import ModuleGenerator
from .pixel import PixelGenerator
from .registry import GENERATORS, make_generator, sized_generator

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
