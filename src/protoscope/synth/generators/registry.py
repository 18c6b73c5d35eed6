"""Generators by name: how configs and the CLI pick a prior and its options."""

from __future__ import annotations

import inspect
from typing import Any

from protoscope.errors import UserError, did_you_mean

from .base import Generator
from .deepsim import DeePSimFC6
from .fourier import FourierGenerator
from .maco import MacoGenerator
from .pixel import PixelGenerator

GENERATORS: dict[str, type[Generator]] = {
    "fourier": FourierGenerator,
    "maco": MacoGenerator,
    "pixel": PixelGenerator,
    "deepsim-fc6": DeePSimFC6,
}


def make_generator(name: str, **kwargs: Any) -> Generator:
    """Build a generator by name (``fourier``, ``maco``, ``pixel``, ``deepsim-fc6``).

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
