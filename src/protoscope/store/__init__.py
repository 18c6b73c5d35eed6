"""The study's store: every result's layout on disk (`layout`), and the modules that read and write them."""

from . import layout
from .arrays import ArrayStore, open_store
from .metrics import METRIC_COLUMNS, MetricsTable, check_settings, tidy

__all__ = ["METRIC_COLUMNS", "ArrayStore", "MetricsTable", "check_settings", "open_store", "layout", "tidy"]
