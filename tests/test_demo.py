"""`protoscope demo --quick`: the whole pipeline, as a user runs it, then resumed."""


from protoscope.cli import main
from protoscope.demo import demo_study
from protoscope.store import MetricsTable


def test_quick_demo_runs_end_to_end_and_resumes_for_free(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
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

    # Everything is stored: a second run trains and probes nothing.
    before = {p: p.stat().st_mtime_ns for p in (out / "metrics").rglob("*.parquet")}
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "metrics").rglob("*.parquet")} == before
    capsys.readouterr()
