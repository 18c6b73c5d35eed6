"""The verbs of a study, one per CLI command: each plans a stage's jobs and executes them.

`execute` skips the jobs whose results are stored and runs the rest on an executor (in-process by
default), so `run`, which chains every stage, only does what is missing. Each verb returns what
a person wants to see next (the stage's metrics, or how much was done now).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..store import MetricsTable, layout
from .base import StudyStage
from .execution import execute


def _stage(module: str):
    """A stage module's instance, imported when its verb is called: the CLI starts without torch."""
    import importlib

    return importlib.import_module(f"{__package__}.{module}").STAGE


def train(study, runs: list[str] | None = None, progress=None, executor=None) -> dict:
    """Train every run of the study that has no `path`, resuming unfinished ones after their last
    stored epoch; returns {run: epochs trained now}."""
    outcome = execute(_stage("training"), study, executor, runs, progress)
    return {job.key[0]: stats.get("epochs", 0) for job, stats in outcome.finished.items()}


def probe(study, runs: list[str] | None = None, progress=None, executor=None) -> pd.DataFrame:
    """Linear probes on every stored checkpoint of every run; returns the probe metrics."""
    execute(_stage("linear_probes"), study, executor, runs, progress)
    return MetricsTable(study.store).read("probe")


def evolve(study, runs: list[str] | None = None, progress=None, executor=None) -> int:
    """Prototypes for every unit of every studied layer, checkpoint and repeat; returns (epoch, repeat)
    results done now."""
    outcome = execute(_stage("prototypes"), study, executor, runs, progress)
    return sum(s.get("repeats", 0) for s in outcome.finished.values())


def rsa(study, runs: list[str] | None = None, progress=None, executor=None) -> pd.DataFrame:
    """RDMs of the stimulus set per run, epoch and layer, and how they change over training; returns the RSA metrics.

    Activations are computed first (once; alignment and atlases reuse them), then RDMs and metrics.
    """
    rdms = _stage("rdms")
    rdms.plan(study, runs)  # names, epochs, then settings, before any activation: a typo records nothing
    execute(_stage("activations"), study, executor, runs, progress)  # refuses a one-category stimulus set
    execute(rdms, study, executor, runs, progress)
    return MetricsTable(study.store).read("rsa")


def align(study, runs: list[str] | None = None, progress=None, executor=None) -> pd.DataFrame:
    """Convergent learning: align the units of paired runs (seeds) and of every epoch with a run's last
    one, from one pass of the stimulus set per job; returns the align metrics."""
    execute(_stage("alignment"), study, executor, runs, progress)
    return MetricsTable(study.store).read("align")


def analyze(study, runs: list[str] | None = None, progress=None, executor=None) -> int:
    """Prototype metrics (diversity, rate of change, re-evolution consistency) in every space of the
    study's `analyze:` section, for every stored (run, layer) that misses some; returns how many
    (run, layer, space) results were computed now. Embeddings are computed once and stored."""
    names = [r if isinstance(r, str) else r.name for r in runs] if runs else None
    outcome = execute(_stage("prototype_metrics"), study, executor, names, progress)
    return sum(s.get("spaces", 0) for s in outcome.finished.values())


def trust(study, runs: list[str] | None = None, progress=None, executor=None) -> pd.DataFrame:
    """Trust scores of every stored prototype against the stimulus set (path similarity, spectral
    naturalness, robustness, natural ratio, plausibility, transfer) and the share that pass
    `trust:`'s thresholds; returns the trust metrics."""
    execute(_stage("trust"), study, executor, runs, progress)
    return MetricsTable(study.store).read("trust")


def tuning(study, runs: list[str] | None = None, progress=None, executor=None) -> pd.DataFrame:
    """Hue, orientation, spatial frequency and contrast curves of every unit of every studied layer at
    every checkpoint (the study's `tuning:` section; defaults when it has none), and their indices;
    returns the tuning metrics (each index's mean over a layer's responding units)."""
    if study.tuning is None:
        from ..specs import TuningSpec

        study = study.model_copy(update={"tuning": TuningSpec()})
    execute(_stage("tuning"), study, executor, runs, progress)
    return MetricsTable(study.store).read("tuning")


def atlas(study, runs: list[str] | None = None, progress=None, executor=None) -> int:
    """Activation atlases over training for the study's `atlas:` section (defaults when it has none):
    per (run, layer), one UMAP layout shared by every epoch, a grid of whitened mean activations and
    an icon per cell; returns the (run, layer) atlases drawn now."""
    return execute(_stage("atlases"), study, executor, runs, progress).done_now


def width(study, runs: list[str] | None = None, progress=None, executor=None) -> pd.DataFrame:
    """The width study of the study's `width:` section (defaults when it has none): nets of several
    widths trained on the original task, read linearly on a new one; returns the width metrics."""
    execute(_stage("width_study"), study, executor, None, progress)
    return MetricsTable(study.store).read("width")


def export(study, out: Path | None = None, runs: list[str] | None = None) -> list[Path]:
    """PNG grids of every stored prototype job: `<out>/<run>/<layer>/epoch_NNN_rR.png`."""
    from ..report.prototypes import save_grid
    from ..store.arrays import ArrayStore

    store = ArrayStore(layout.arrays(study))
    out = Path(out) if out else Path(study.store) / "prototypes"
    paths = []
    for run in StudyStage.runs(study, runs):
        if run.name not in store.runs():
            continue
        for layer in store.layers(run.name):
            for epoch, repeat in sorted(store.done_jobs(run.name, layer)):
                images = store.read_job(run.name, layer, epoch, repeat)["prototype"]
                paths.append(save_grid(images, out / run.name / layer / f"epoch_{epoch:03d}_r{repeat}.png"))
    return paths


def report(study, site: bool = True) -> list[Path]:
    """The figures for whatever results are stored, then the site (`report/site`); returns the figures
    and the site's index.html. Figures are drawn again only when a result file changed."""
    from ..report.freshness import figures_are_current, mark_figures_current

    out = layout.figures(study)
    if figures_are_current(study.store):
        paths = sorted(out.glob("*.png")) + sorted(out.glob("*.pdf"))
    else:
        paths = draw_figures(study, out)
        mark_figures_current(study.store)
    if site:
        from ..report.site import write_site

        paths.append(write_site(study).path / "index.html")
    return paths


def draw_figures(study, out: Path) -> list[Path]:
    """Draw every figure the stored results allow."""
    from ..report import figures

    metrics = MetricsTable(study.store).read()
    paths: list[Path] = []
    if (metrics["metric"].str.startswith("probe_")).any():
        paths += figures.probe_accuracy(metrics, out / "probe_accuracy")
    if (metrics["metric"] == "simclr_loss").any():
        paths += figures.training_loss(metrics, out / "training_loss")
    if layout.arrays(study).is_dir():
        from ..report.prototypes import prototype_figures

        paths += prototype_figures(study, out)
    if metrics["metric"].str.startswith("diversity_").any():
        from ..report.prototype_metrics import prototype_metric_figures

        paths += prototype_metric_figures(metrics, out, study.layers)
    if metrics["metric"].str.startswith("rsa_").any():
        from ..report.rsa import rsa_figures

        paths += rsa_figures(study, metrics, out)
    if metrics["metric"].str.startswith(("align_", "track_")).any():
        from ..report.align import align_figures

        paths += align_figures(study, metrics, out)
    if metrics["metric"].str.startswith("trust_").any():
        from ..report.trust import trust_figures

        paths += trust_figures(study, metrics, out)
    if metrics["metric"].str.startswith("tuning_").any():
        from ..report.tuning import tuning_figures

        paths += tuning_figures(study, metrics, out)
    if layout.atlas(study).is_dir():
        from ..report.atlas import atlas_figures

        paths += atlas_figures(study, out)
    if metrics["metric"].str.startswith("width_").any():
        paths += figures.width_study(metrics, out / "width_study")
    return paths


def run(study, progress=None, executor=None) -> list[Path]:
    """Every stage of the study that is not yet stored, in order, each on `executor` (default: this
    process); then the figures."""
    for stage in (train, probe, evolve, analyze, rsa, align, trust):
        stage(study, progress=progress, executor=executor)
    if study.tuning is not None:
        tuning(study, progress=progress, executor=executor)
    if study.atlas is not None:
        atlas(study, progress=progress, executor=executor)
    if study.width is not None:
        width(study, progress=progress, executor=executor)
    return report(study)


def final_table(study) -> pd.DataFrame:
    """Probe test accuracy at the initialization and the last epoch, per run and classifier."""
    metrics = MetricsTable(study.store).read()
    test = metrics[metrics["metric"].str.match(r"probe_.*_test")]
    if test.empty:
        return pd.DataFrame()
    last = test.groupby("run")["epoch"].transform("max")
    pick = test[(test["epoch"] == 0) | (test["epoch"] == last)].copy()
    pick["classifier"] = pick["metric"].str.removeprefix("probe_").str.removesuffix("_test")
    pick["when"] = pick["epoch"].map(lambda e: "init" if e == 0 else "final")
    wide = pick.pivot_table(index=["condition", "run"], columns=["classifier", "when"], values="value")
    return wide.sort_index(axis=1)
