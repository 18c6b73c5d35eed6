"""The train stage's jobs: one per run the study trains (runs with a `path` bring their checkpoints).

A run's epochs follow each other, so the run is the job; inside it, training resumes after the last
epoch whose state is stored (`simclr.train_run`), and each epoch's loss goes to the metrics table
before the state that marks the epoch done. Runs train in parallel on a distributed executor.
"""

from __future__ import annotations

from ..errors import UserError
from ..jobs import Job
from ..nets.checkpoints import epoch_files
from ..runtime import use_bf16
from ..store import MetricsTable
from .simclr import check_run_file, train_run, trained_epochs


class TrainStage:
    name = "train"

    def plan(self, study, runs):
        selected = [study.run(n) for n in runs] if runs else list(study.runs)
        jobs = []
        for run in selected:
            if run.path is None:
                jobs.append(Job(STAGE_REF, (run.name,), run.name))
            elif not epoch_files(run.path):
                raise UserError(f"Run {run.name!r}: no checkpoints (epoch_<n>.safetensors|.pt) in {run.path}")
        return jobs

    def prepare(self, study, jobs) -> None:
        """A run folder trained with other settings is refused, even when its training is finished."""
        for job in jobs:
            run = study.run(job.key[0])
            check_run_file(study.run_dir(run), run)

    def is_done(self, study, job) -> bool:
        run = study.run(job.key[0])
        return trained_epochs(study.run_dir(run)) >= run.epochs

    def run(self, study, job, device, emit) -> dict:
        from ..data.datasets import TrainImages

        run = study.run(job.key[0])
        steps = TrainImages(run.data, run.optimizer.batch_size).steps_per_epoch
        table = MetricsTable(study.store)
        base = {"run": run.name, "condition": run.condition, "seed": run.seed, "layer": None}

        def on_step(epoch, step, loss):
            emit(f"epoch {epoch}/{run.epochs} loss {loss:.3f}",
                 fraction=((epoch - 1) * steps + step + 1) / (steps * run.epochs))

        def on_epoch(record):
            table.write("train", f"{run.name}/epoch_{record['epoch']:03d}", [
                dict(base, epoch=record["epoch"], metric="simclr_loss", value=record["loss"]),
                dict(base, epoch=record["epoch"], metric="seconds", value=record["seconds"]),
            ])

        records = train_run(run, study.run_dir(run), device, use_bf16(device, study.precision), study.workers,
                            on_step=on_step, on_epoch=on_epoch)
        return {"epochs": len(records), "loss": records[-1]["loss"] if records else None}


STAGE = TrainStage()
STAGE_REF = f"{__name__}:STAGE"
