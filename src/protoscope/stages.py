"""The stages of a study, each a plain function with a CLI verb of the same name.

A stage plans the study's jobs and hands them to `jobs.execute`, which skips the
jobs whose results are stored and runs the rest on an executor (in-process by
default). `run` chains every stage, so re-running a study only does
what is missing.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .jobs import execute
from .store import MetricsTable
from .study import Study

STAGES = ("train", "probe", "evolve", "analyze", "rsa", "align", "atlas", "width", "report")


def new_progress(enabled: bool = True):
    """Rich progress bars on a terminal; one line per job event (`JobLog`) when stdout is a file or
    pipe (a batch job's log, a test that watches a run)."""
    import sys

    if enabled and not sys.stdout.isatty():
        return JobLog(sys.stdout)
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        disable=not enabled,
    )


class JobLog:
    """Progress as plain lines, one per job started, finished or failed, with the job's stats."""

    def __init__(self, stream):
        self.stream, self.started = stream, {}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stream.flush()

    def add_task(self, description: str, total: int, completed: int = 0, **fields) -> str:
        if completed == total:
            self._line(f"{description}: {total} stored")
        return description

    def update(self, task, **fields) -> None:
        pass

    def job_event(self, stage: str, event) -> None:
        import time

        if event.kind == "started":
            self.started[event.job] = time.perf_counter()
            self._line(f"{stage} {event.job} started")
        elif event.kind == "finished":
            seconds = time.perf_counter() - self.started.pop(event.job, time.perf_counter())
            stats = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in event.stats.items() if isinstance(v, (int, float, str)))
            self._line(f"{stage} {event.job} finished in {seconds:.1f} s {stats}".rstrip())
        elif event.kind == "failed":
            self._line(f"{stage} {event.job} failed: {type(event.error).__name__}")

    def _line(self, text: str) -> None:
        import time

        self.stream.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        self.stream.flush()


def _selected(study: Study, runs: list[str] | None):
    return [study.run(name) for name in runs] if runs else list(study.runs)


def train(study: Study, runs: list[str] | None = None, progress: Progress | None = None,
          executor=None) -> dict:
    """Train every run of the study that has no `path`, resuming unfinished ones after their last
    stored epoch; returns {run: epochs trained now}."""
    from .train.train_jobs import STAGE

    outcome = execute(STAGE, study, executor, runs, progress)
    return {job.key[0]: stats.get("epochs", 0) for job, stats in outcome.finished.items()}


def probe(study: Study, runs: list[str] | None = None, progress: Progress | None = None,
          executor=None) -> pd.DataFrame:
    """Linear probes on every stored checkpoint of every run; returns the probe metrics."""
    from .train.probe_jobs import STAGE

    execute(STAGE, study, executor, runs, progress)
    return MetricsTable(study.store).read("probe")


def evolve(study: Study, runs: list[str] | None = None, progress: Progress | None = None,
           executor=None) -> int:
    """Prototypes for every unit of every studied layer, checkpoint and repeat; returns (epoch, repeat)
    results done now."""
    from .synth.jobs import STAGE

    outcome = execute(STAGE, study, executor, runs, progress)
    return sum(s.get("repeats", 0) for s in outcome.finished.values())


def rsa(study: Study, runs: list[str] | None = None, progress: Progress | None = None,
        executor=None) -> pd.DataFrame:
    """RDMs of the probe set per run, epoch and layer, and how they change over training; returns the RSA metrics.

    Activations are computed first (once; alignment and atlases reuse them), then RDMs and metrics.
    """
    from .analyze.activations import ActivationStage
    from .analyze.rsa import RSAStage

    RSAStage().plan(study, runs)  # names, epochs, then settings, before any activation: a typo records nothing
    execute(ActivationStage(), study, executor, runs, progress)  # refuses a one-category probe set
    execute(RSAStage(), study, executor, runs, progress)
    return MetricsTable(study.store).read("rsa")


def align(study: Study, runs: list[str] | None = None, progress: Progress | None = None,
          executor=None) -> pd.DataFrame:
    """Convergent learning: align the units of paired runs (seeds) and of every epoch with a run's last
    one, from one pass of the probe set per job; returns the align metrics."""
    from .analyze.align.jobs import ALIGN

    execute(ALIGN, study, executor, runs, progress)
    return MetricsTable(study.store).read("align")


def analyze(study: Study, runs: list[str] | None = None, progress: Progress | None = None,
            executor=None) -> int:
    """Prototype metrics (diversity, rate of change, re-evolution consistency) in every space of the
    study's `analyze:` section, for every stored (run, layer) that misses some; returns how many
    (run, layer, space) results were computed now. Embeddings are computed once and stored."""
    from .analyze.prototype_metrics import analyze_prototypes

    return analyze_prototypes(study, runs, progress, executor)


def atlas(study: Study, runs: list[str] | None = None, progress: Progress | None = None,
          executor=None) -> int:
    """Activation atlases over training for the study's `atlas:` section (defaults when it has none):
    per (run, layer), one UMAP layout shared by every epoch, a grid of whitened mean activations and
    an icon per cell; returns the (run, layer) atlases drawn now."""
    from .analyze.atlas_jobs import ATLAS

    return execute(ATLAS, study, executor, runs, progress).done_now


def width(study: Study, runs: list[str] | None = None, progress: Progress | None = None,
          executor=None) -> pd.DataFrame:
    """The width study of the study's `width:` section (defaults when it has none): nets of several
    widths trained on the original task, read linearly on a new one; returns the width metrics."""
    from .train.width_jobs import STAGE

    execute(STAGE, study, executor, None, progress)
    return MetricsTable(study.store).read("width")


def export(study: Study, out: Path | None = None, runs: list[str] | None = None) -> list[Path]:
    """PNG grids of every stored prototype job: `<out>/<run>/<layer>/epoch_NNN_rR.png`."""
    from .report.prototypes import save_grid
    from .store.arrays import ArrayStore

    store = ArrayStore(study.store / "arrays.zarr")
    out = Path(out) if out else Path(study.store) / "prototypes"
    paths = []
    for run in _selected(study, runs):
        if run.name not in store.runs():
            continue
        for layer in store.layers(run.name):
            for epoch, repeat in sorted(store.done_jobs(run.name, layer)):
                images = store.read_job(run.name, layer, epoch, repeat)["prototype"]
                paths.append(save_grid(images, out / run.name / layer / f"epoch_{epoch:03d}_r{repeat}.png"))
    return paths


def report(study: Study, site: bool = True) -> list[Path]:
    """The figures for whatever results are stored, then the site (`report/site`); returns the figures
    and the site's index.html. Figures are drawn again only when a result file changed."""
    from .report.freshness import figures_are_current, mark_figures_current

    out = Path(study.store) / "figures"
    if figures_are_current(study.store):
        paths = sorted(out.glob("*.png")) + sorted(out.glob("*.pdf"))
    else:
        paths = draw_figures(study, out)
        mark_figures_current(study.store)
    if site:
        from .report.site import write_site

        paths.append(write_site(study).path / "index.html")
    return paths


def draw_figures(study: Study, out: Path) -> list[Path]:
    """Draw every figure the stored results allow."""
    from .report import figures

    metrics = MetricsTable(study.store).read()
    paths: list[Path] = []
    if (metrics["metric"].str.startswith("probe_")).any():
        paths += figures.probe_accuracy(metrics, out / "probe_accuracy")
    if (metrics["metric"] == "simclr_loss").any():
        paths += figures.training_loss(metrics, out / "training_loss")
    if (Path(study.store) / "arrays.zarr").is_dir():
        from .report.prototypes import prototype_figures

        paths += prototype_figures(study, out)
    if metrics["metric"].str.startswith("diversity_").any():
        from .report.prototype_metrics import prototype_metric_figures

        paths += prototype_metric_figures(metrics, out, study.layers)
    if metrics["metric"].str.startswith("rsa_").any():
        from .report.rsa import rsa_figures

        paths += rsa_figures(study, metrics, out)
    if metrics["metric"].str.startswith(("align_", "track_")).any():
        from .report.align import align_figures

        paths += align_figures(study, metrics, out)
    if (Path(study.store) / "atlas.zarr").is_dir():
        from .report.atlas import atlas_figures

        paths += atlas_figures(study, out)
    if metrics["metric"].str.startswith("width_").any():
        paths += figures.width_study(metrics, out / "width_study")
    return paths


def run(study: Study, progress: Progress | None = None, executor=None) -> list[Path]:
    """Every stage of the study that is not yet stored, in order, each on `executor` (default: this
    process); then the figures."""
    for stage in (train, probe, evolve, analyze, rsa, align):
        stage(study, progress=progress, executor=executor)
    if study.atlas is not None:
        atlas(study, progress=progress, executor=executor)
    if study.width is not None:
        width(study, progress=progress, executor=executor)
    return report(study)


def final_table(study: Study) -> pd.DataFrame:
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
