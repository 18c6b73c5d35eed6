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

from .errors import UserError
from .jobs import execute
from .nets.checkpoints import epoch_files
from .runtime import resolve_device, use_bf16
from .store import MetricsTable
from .study import Study
from .train.simclr import train_run

STAGES = ("train", "probe", "evolve", "analyze", "rsa", "align", "report")


def new_progress(enabled: bool = True) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        disable=not enabled,
    )


def _selected(study: Study, runs: list[str] | None):
    return [study.run(name) for name in runs] if runs else list(study.runs)


def _run_row(run) -> dict:
    return {"run": run.name, "condition": run.condition, "seed": run.seed}


def train(study: Study, runs: list[str] | None = None, progress: Progress | None = None) -> list[dict]:
    """Train every run of the study that has no `path` (resuming unfinished ones)."""
    progress = progress or new_progress(False)
    device = resolve_device(study.device)
    bf16 = use_bf16(device, study.precision)
    table = MetricsTable(study.store)
    done = []
    for run in _selected(study, runs):
        if run.path is not None:
            if not epoch_files(run.path):
                raise UserError(f"Run {run.name!r}: no checkpoints (epoch_<n>.safetensors|.pt) in {run.path}")
            continue
        folder = study.run_dir(run)
        from .data.datasets import TrainImages

        steps = TrainImages(run.data, run.optimizer.batch_size).steps_per_epoch
        task = progress.add_task(f"train {run.name}", total=steps * run.epochs, info="")

        def on_step(epoch, step, loss, task=task, steps=steps):
            progress.update(task, completed=(epoch - 1) * steps + step + 1, info=f"epoch {epoch} loss {loss:.3f}")

        def on_epoch(record, run=run):
            table.write("train", f"{run.name}/epoch_{record['epoch']:03d}", [
                dict(_run_row(run), epoch=record["epoch"], layer=None, metric="simclr_loss", value=record["loss"]),
                dict(_run_row(run), epoch=record["epoch"], layer=None, metric="seconds", value=record["seconds"]),
            ])

        records = train_run(run, folder, device, bf16, study.workers, on_step=on_step, on_epoch=on_epoch)
        progress.update(task, completed=steps * run.epochs, info="done" if records else "already trained")
        done.extend(dict(r, run=run.name) for r in records)
    return done


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


def report(study: Study) -> list[Path]:
    """Draw the figures for whatever metrics are stored."""
    from .report import figures

    metrics = MetricsTable(study.store).read()
    out = Path(study.store) / "figures"
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
    return paths


def run(study: Study, progress: Progress | None = None) -> list[Path]:
    """Every stage of the study that is not yet stored, in order."""
    train(study, progress=progress)
    probe(study, progress=progress)
    evolve(study, progress=progress)
    analyze(study, progress=progress)
    rsa(study, progress=progress)
    align(study, progress=progress)
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
