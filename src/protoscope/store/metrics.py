"""The study's store on disk. This module holds the tidy metrics table.

Metrics are one Parquet file per job (`metrics/<stage>/<key>.parquet`), each
written atomically: a job's results appear whole or not at all, a finished job
is skipped on resume, and workers on different machines never write the same
file. Reading concatenates them into one long table.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..atomic import atomic_path

METRIC_COLUMNS = ["run", "condition", "seed", "repeat", "epoch", "layer", "metric", "space", "value"]
_DTYPES = {
    "run": "string", "condition": "string", "seed": "Int64", "repeat": "Int64", "epoch": "Int64",
    "layer": "string", "metric": "string", "space": "string", "value": "float64",
}


def tidy(rows: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """Rows as a metrics frame: exactly the table's columns, missing ones as NA."""
    frame = pd.DataFrame(rows)
    extra = set(frame.columns) - set(METRIC_COLUMNS)
    if extra:
        raise ValueError(f"unknown metric columns {sorted(extra)}; the table has {METRIC_COLUMNS}")
    for column in METRIC_COLUMNS:
        if column not in frame:
            frame[column] = pd.NA
    return frame[METRIC_COLUMNS].astype(_DTYPES)


class MetricsTable:
    """The long-format metrics of one study, partitioned by stage and job."""

    def __init__(self, store: str | Path):
        self.root = Path(store) / "metrics"

    def _path(self, stage: str, key: str) -> Path:
        return self.root / stage / f"{key}.parquet"

    def has(self, stage: str, key: str) -> bool:
        return self._path(stage, key).is_file()

    def write(self, stage: str, key: str, rows: list[dict] | pd.DataFrame) -> Path:
        path = self._path(stage, key)
        frame = tidy(rows)
        with atomic_path(path) as tmp:
            frame.to_parquet(tmp, index=False)
        return path

    def read(self, stage: str | None = None) -> pd.DataFrame:
        folder = self.root / stage if stage else self.root
        files = sorted(folder.rglob("*.parquet")) if folder.is_dir() else []
        if not files:
            return tidy([])
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True).astype(_DTYPES)


def check_settings(store: str | Path, stage: str, settings: dict, record: bool = True) -> None:
    """Refuse to mix results computed under different settings in one stage.

    The first run of a stage records its settings; a later run with other
    settings gets a clear error (naming the settings that differ) instead of
    silently stale numbers. With `record=False` the settings are only compared:
    a stage checks first and records just before it writes its first result,
    so a run that fails before any result leaves the store as it was.
    """
    import json

    from ..atomic import link_if_absent
    from ..errors import UserError

    path = Path(store) / "metrics" / stage / "_settings.json"
    text = json.dumps(settings, sort_keys=True, default=str)
    if not path.is_file():
        if not record or link_if_absent(path, text):  # race-free: of several workers, one records
            return
    stored, wanted = json.loads(path.read_text()), json.loads(text)
    if stored != wanted:
        keys = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
        diffs = "; ".join(f"{stage}.{k}: stored {stored.get(k, '<unset>')!r}, now {wanted.get(k, '<unset>')!r}"
                          for k in keys)
        raise UserError(
            f"The {stage} settings changed since its results in {path.parent} were computed ({diffs}). "
            f"Delete that folder to recompute them with the new settings, or use another store."
        )
