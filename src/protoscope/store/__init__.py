"""The study's store: the tidy metrics table (Parquet) and the array store (Zarr)."""

from .arrays import ArrayStore, open_store
from .metrics import METRIC_COLUMNS, MetricsTable, check_settings, tidy

__all__ = ["METRIC_COLUMNS", "ArrayStore", "MetricsTable", "check_settings", "open_store", "tidy"]
