"""protoscope: how the features of a neural network develop during training.

Two ways in, one code path:

- models in memory (a notebook): `prototypes`, `receptive_field`, `atlas`, `rdms`, `align` and
  `show` (`protoscope.api`) take `nn.Module`s and tensors and return plain objects;
- a study file: `load_study`, then its stages, `protoscope.stages.<verb>(study)` (`run` chains
  them); every stage but align and atlas is also here under its verb. `protoscope.align` and
  `protoscope.atlas` are the in-memory functions; their stages are `protoscope.stages.align`
  and `protoscope.stages.atlas`.
"""

from . import stages
from .api import align, atlas, declare, prototypes, rdms, receptive_field, show
from .errors import UserError
from .stages import analyze, evolve, export, probe, report, rsa, run, train, width
from .store import open_store
from .study import Study, load_study

__version__ = "0.1.0"
__all__ = [
    "Study", "UserError", "load_study", "open_store", "stages",
    "prototypes", "receptive_field", "atlas", "rdms", "align", "show", "declare",
    "train", "probe", "evolve", "analyze", "rsa", "width", "report", "export", "run",
    "__version__",
]
