import pandas as pd
import pytest

from protoscope.errors import UserError
from protoscope.store import METRIC_COLUMNS, MetricsTable, check_settings, tidy


def test_metrics_round_trip_and_partitioning(tmp_path):
    table = MetricsTable(tmp_path)
    assert table.read().empty and list(table.read().columns) == METRIC_COLUMNS
    table.write("probe", "a/epoch_000", [{"run": "a", "epoch": 0, "metric": "m", "value": 0.5}])
    table.write("probe", "a/epoch_001", [{"run": "a", "epoch": 1, "metric": "m", "value": 0.7}])
    table.write("train", "a/epoch_001", [{"run": "a", "epoch": 1, "metric": "loss", "value": 3.0}])
    assert table.has("probe", "a/epoch_001") and not table.has("probe", "a/epoch_002")
    assert len(table.read()) == 3 and len(table.read("probe")) == 2
    got = table.read("probe").sort_values("epoch")
    assert got["value"].tolist() == [0.5, 0.7]
    assert got["repeat"].isna().all()  # not applicable -> NA, never a fake 0
    # rewriting a job replaces its rows, it does not append
    table.write("probe", "a/epoch_001", [{"run": "a", "epoch": 1, "metric": "m", "value": 0.9}])
    assert sorted(table.read("probe")["value"]) == [0.5, 0.9]
    assert not list(tmp_path.rglob("*.tmp"))


def test_unknown_columns_are_refused():
    with pytest.raises(ValueError, match="unknown metric columns"):
        tidy([{"run": "a", "valeu": 1.0}])


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    table = MetricsTable(tmp_path)

    def boom(self, path, index=False):
        open(path, "wb").write(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", boom)
    with pytest.raises(RuntimeError):
        table.write("probe", "a/epoch_000", [{"run": "a", "value": 1.0}])
    assert not table.has("probe", "a/epoch_000")
    assert not list(tmp_path.rglob("*.tmp"))


def test_changed_settings_are_refused(tmp_path):
    check_settings(tmp_path, "probe", {"layer": "avgpool"})
    check_settings(tmp_path, "probe", {"layer": "avgpool"})
    with pytest.raises(UserError, match="settings changed"):
        check_settings(tmp_path, "probe", {"layer": "layer4"})
