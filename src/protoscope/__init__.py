"""protoscope: how the features of a neural network develop during training."""

from .errors import UserError
from .store import open_store
from .stages import align, analyze, atlas, evolve, export, probe, report, rsa, run, train, width
from .study import Study, load_study

__version__ = "0.1.0"
__all__ = [
    "Study", "UserError", "load_study", "open_store",
    "train", "probe", "evolve", "analyze", "rsa", "align", "atlas", "width", "report", "export", "run",
    "__version__",
]
