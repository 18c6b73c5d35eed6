"""The align stage end to end on random checkpoints (no training): stored results, metrics, resume, errors."""

import numpy as np
import pytest

from protoscope import stages
from protoscope.store.alignment import align_root, read_result
from protoscope.cli import main
from protoscope.errors import UserError
from protoscope.store import MetricsTable
from protoscope.study import load_study

from ..conftest import checkpoint_study_dict

FAST = {"mi_samples": 400, "penalties": [0.01, 0.001], "sparse_iter": 300, "batch_size": 10}


@pytest.fixture
def align_study(tmp_path, write_study):
    data = checkpoint_study_dict(tmp_path)
    data["align"] = dict(FAST)
    return load_study(write_study(data))


def test_align_stage_stores_every_alignment_and_resumes_for_free(align_study):
    metrics = stages.align(align_study)
    root = align_root(align_study)
    # default pairs: the two runs share a condition; aligned at their last common epoch (2)
    pair = metrics[metrics["run"] == "a~b"]
    assert set(pair["epoch"]) == {2} and set(pair["layer"].dropna()) >= {"layer1", "layer3"}
    bip = pair[pair["metric"] == "align_corr_bipartite_mean"].set_index("layer")["value"]
    semi = pair[pair["metric"] == "align_corr_semi_mean"].set_index("layer")["value"]
    assert np.all(semi >= bip - 1e-12) and bip.between(-1, 1).all()
    assert {"sparse_loss", "sparse_weights"} <= set(pair["metric"])
    assert set(pair[pair["metric"] == "sparse_loss"]["space"]) == {"0.01", "0.001", "0.00251"}
    converged = pair[pair["metric"] == "sparse_converged"]  # 1 or 0 per penalty: did sparse_iter suffice
    assert set(converged["space"]) == {"0.01", "0.001", "0.00251"} and set(converged["value"]) <= {0.0, 1.0}
    ds = read_result(root / "epoch_002" / "a~b" / "layer3.nc")
    assert ds.attrs["run_a"] == "a" and ds["between"].dims == ("a", "b")
    assert sorted(ds["partner_bipartite"].values[ds["partner_bipartite"].values >= 0]) == sorted(
        set(ds["partner_bipartite"].values) - {-1})  # one-to-one
    assert "mi" in ds and np.isfinite(ds["mi"].values).all()
    assert np.isfinite(metrics["value"]).all()
    # tracking: every epoch of both runs against their last; the last epoch is itself
    track = metrics[metrics["metric"] == "track_self_corr"]
    assert set(track["run"]) == {"a", "b"} and set(track["epoch"]) == {0, 1, 2}
    assert np.allclose(track[track["epoch"] == 2]["value"], 1.0)
    assert (metrics["metric"] == "track_cka_debiased").any() and (metrics["metric"] == "cka").any()
    assert (root / "track" / "a" / "cka.nc").is_file() and (root / "epoch_002" / "summary.nc").is_file()

    before = {p: p.stat().st_mtime_ns for p in root.rglob("*.nc")}
    stages.align(align_study)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.nc")} == before

    from protoscope.report.align import align_figures

    paths = align_figures(align_study, MetricsTable(align_study.store).read(), align_study.store / "figures")
    names = {p.name for p in paths if p.suffix == ".png"}
    assert {"align_means.png", "align_matching.png", "align_layers.png", "align_sparse.png",
            "align_clusters.png", "align_track.png", "align_cka.png"} <= names


def test_bad_pairs_are_user_errors(tmp_path, write_study):
    data = checkpoint_study_dict(tmp_path)
    data["align"] = dict(FAST, pairs=[["a", "bb"]])
    with pytest.raises(UserError, match="'bb'.*Did you mean 'b'"):
        stages.align(load_study(write_study(data)))
    data["align"] = dict(FAST, pairs=[["a", "a"]])
    with pytest.raises(UserError, match="itself"):
        stages.align(load_study(write_study(data, "self.yaml")))
    data["align"] = dict(FAST, typo=1)
    with pytest.raises(UserError, match="align.typo"):
        load_study(write_study(data, "typo.yaml"))


def test_cli_align_prints_the_matching_table(tmp_path, write_study, capsys):
    data = checkpoint_study_dict(tmp_path)
    data["align"] = dict(FAST, track=[], epochs=[1])
    assert main(["align", str(write_study(data))]) == 0
    printed = capsys.readouterr().out
    assert "a~b" in printed and "bipartite" in printed and "align_matching.png" in printed
