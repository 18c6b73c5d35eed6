"""`protoscope demo --quick`: the whole pipeline, as a user runs it, then resumed."""

import pytest

from protoscope.cli import main
from protoscope.demo import demo_study
from protoscope.store import MetricsTable


@pytest.mark.xdist_group("quick_demo")
def test_quick_demo_runs_end_to_end_and_resumes_for_free(quick_demo, capsys):
    out, printed = quick_demo
    assert "clrjit-s0" in printed and "keepclr-s0" in printed and "probe_accuracy.png" in printed

    study = demo_study(out, quick=True)
    metrics = MetricsTable(out).read()
    probe = metrics[metrics["metric"] == "probe_logreg_test"]
    epochs = study.runs[0].epochs
    assert sorted(probe["run"].unique()) == ["clrjit-s0", "clrjit-s1", "keepclr-s0"]
    assert sorted(probe["epoch"].unique()) == list(range(epochs + 1))
    assert probe["value"].between(0, 1).all()
    assert (metrics["metric"] == "simclr_loss").sum() == 3 * epochs
    for name in ("probe_accuracy", "training_loss"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000
        assert (out / "figures" / f"{name}.pdf").is_file()

    # RSA: trajectory metrics for every run x layer, consecutive epochs from 1, the seed's two figures.
    rsa = metrics[metrics["metric"].str.startswith("rsa_")]
    assert set(rsa.groupby(["run", "layer"]).groups) == {(r.name, layer) for r in study.runs for layer in study.layers}
    consecutive = rsa[rsa["metric"] == "rsa_consecutive_pearson"]
    assert sorted(consecutive["epoch"].unique()) == list(range(1, epochs + 1))
    assert consecutive["value"].between(-1, 1).all() and rsa["value"].notna().all()
    within = rsa[(rsa["metric"] == "rsa_within") & (rsa["space"] != "mean")]
    assert sorted(within["space"].unique()) == sorted(["circle", "triangle", "square", "star"])
    for name in ("rsa_consecutive", "rsa_categories", "rsa_mds", "rsa_rdms_clrjit-s0"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000
    assert (out / "activations.zarr" / "runs" / "clrjit-s1" / "layer4").is_dir()

    # Prototype metrics: every run x layer in both spaces, every epoch; the three figures; embeddings stored.
    proto = metrics[metrics["metric"].str.match(r"(diversity|change|consistency)_(mse|cosine)$")]
    assert set(proto.groupby(["run", "layer", "space"]).groups) == {
        (r.name, layer, space) for r in study.runs for layer in study.layers for space in ("pixel", "clrjit-s1-e2")}
    assert sorted(proto[proto["metric"] == "diversity_cosine"]["epoch"].unique()) == list(range(epochs + 1))
    assert sorted(proto[proto["metric"] == "change_mse"]["epoch"].unique()) == list(range(epochs))
    assert (proto["value"].dropna() >= 0).all() and proto["value"].notna().mean() > 0.9
    for name in ("prototype_diversity", "prototype_change", "prototype_consistency"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000
    assert (out / "embeddings.zarr" / "masked" / "clrjit-s1-e2" / "keepclr-s0" / "layer4").is_dir()
    assert (out / "unit_metrics.zarr" / "pixel" / "clrjit-s0" / "layer1").is_dir()

    # Alignment: the two clrjit seeds at the last epoch, every layer; clrjit-s0 tracked over every epoch.
    align = metrics[metrics["run"] == "clrjit-s0~clrjit-s1"]
    bipartite = align[align["metric"] == "align_corr_bipartite_mean"].set_index("layer")["value"]
    semi = align[align["metric"] == "align_corr_semi_mean"].set_index("layer")["value"]
    assert sorted(bipartite.index) == sorted(study.layers) and set(align["epoch"]) == {epochs}
    assert bipartite.between(-1, 1).all() and (semi >= bipartite - 1e-9).all()
    track = metrics[metrics["metric"] == "track_self_corr"]
    assert set(track["run"]) == {"clrjit-s0"} and sorted(track["epoch"].unique()) == list(range(epochs + 1))
    for name in ("align_matching", "align_track", "align_clusters", "align_cka"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000

    # Effective dimensionality of every run x layer at every epoch, and its figure.
    dims = metrics[metrics["metric"].isin(["dim_participation_ratio", "dim_rankme"])]
    assert len(dims) == 2 * len(study.runs) * len(study.layers) * (epochs + 1)
    assert (dims["value"] >= 1).all() and (out / "figures" / "effective_dimensionality.png").is_file()

    # Atlases: clrjit-s0 and keepclr-s0, layer3, on one map; a PNG per epoch; the map figures.
    for run in ("clrjit-s0", "keepclr-s0"):
        strip = sorted(p.name for p in (out / "figures" / "atlas" / run / "layer3").iterdir())
        assert strip == ["epoch_000.png", "epoch_001.png", "epoch_002.png"]
        for name in (f"atlas_{run}_layer3.png", f"atlas_map_{run}_layer3.png"):
            assert (out / "figures" / name).stat().st_size > 10_000
    assert (out / "figures" / "atlas_clrjit-s0+keepclr-s0_layer3.png").stat().st_size > 10_000
    atlas = metrics[metrics["metric"] == "atlas_filled_cells"]
    assert len(atlas) == 2 * 3 and (atlas["value"] >= 1).all()

    # The width study: conv nets of width 4 and 16, both tasks, the raw baseline, the figure.
    width = metrics[metrics["metric"] == "width_new_accuracy"]
    assert sorted(width["space"]) == ["16", "4", "input"] and width["value"].between(0, 1).all()
    assert (out / "figures" / "width_study.png").stat().st_size > 10_000

    # Everything is stored: a second run trains and probes nothing.
    before = {p: p.stat().st_mtime_ns for p in (out / "metrics").rglob("*.parquet")}
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "metrics").rglob("*.parquet")} == before
    capsys.readouterr()
