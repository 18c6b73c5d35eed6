"""protoscope: how the features of a neural network develop during training."""

from .errors import UserError
from .store import open_store
from .stages import probe, report, run, train
from .study import Study, load_study

__version__ = "0.1.0"
__all__ = ["Study", "UserError", "load_study", "open_store", "probe", "report", "run", "train", "__version__"]
