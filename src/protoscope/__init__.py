"""protoscope: how the features of a neural network develop during training.

Two ways in, one code path:

- models in memory (a notebook): `prototypes`, `receptive_field`, `atlas`, `rdms`, `align` and
  `show` (`protoscope.api`) take `nn.Module`s and tensors and return plain objects;
- a study file: `load_study`, then its stages, `protoscope.stages.<verb>(study)` (`run` chains
  them); every stage but align and atlas is also here under its verb. `protoscope.align` and
  `protoscope.atlas` are the in-memory functions; their stages are `protoscope.stages.align`
  and `protoscope.stages.atlas`.

Names are imported when first used, so `import protoscope.study` (a scheduler reading a study
file, `--help`) does not pay for torch.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "stages": None, "UserError": ".errors", "Checkpointer": ".train.checkpointer",
    "lightning_callback": ".train.checkpointer", "open_store": ".store", "Study": ".study", "load_study": ".study",
    **{name: ".api" for name in ("prototypes", "receptive_field", "atlas", "rdms", "align", "show", "declare", "trust",
                                     "tuning")},
    **{name: ".stages" for name in ("train", "probe", "evolve", "analyze", "rsa", "width", "report", "export", "run")},
}

__version__ = "0.1.0"
__all__ = [
    "Study", "UserError", "load_study", "open_store", "stages", "Checkpointer", "lightning_callback",
    "prototypes", "receptive_field", "atlas", "rdms", "align", "show", "declare", "trust", "tuning",
    "train", "probe", "evolve", "analyze", "rsa", "width", "report", "export", "run",
    "__version__",
]


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    home = _HOMES[name]
    value = importlib.import_module(f".{name}" if home is None else home, __name__)
    value = value if home is None else getattr(value, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
