"""The train stage: one job per run the study trains (runs with a `path` bring their checkpoints).

A run's epochs follow each other, so the run is the job; inside it, training resumes after the last
epoch whose state is stored (`train.simclr.train_run`), and each epoch's loss goes to the metrics
table before the state that marks the epoch done. Runs train in parallel on a distributed executor.
"""

from __future__ import annotations

from ..runtime import use_bf16
from ..store import MetricsTable
from ..train.simclr import check_run_file, train_run, trained_epochs
from .base import StudyStage, check_architectures, checkpoints


class TrainStage(StudyStage):
    name = "train"

    def plan(self, study, runs):
        jobs = []
        for run in self.runs(study, runs):
            if run.path is None:
                jobs.append(self.job((run.name,), run.name))
            else:
                checkpoints(study, run)  # a run that brings its checkpoints must have some
        check_architectures(study, [study.run(job.key[0]) for job in jobs])
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

        def on_step(epoch, step, loss):
            emit(f"epoch {epoch}/{run.epochs} loss {loss:.3f}",
                 fraction=((epoch - 1) * steps + step + 1) / (steps * run.epochs))

        def on_epoch(record):
            row = self.row(run, layer=None, epoch=record["epoch"])
            table.write("train", f"{run.name}/epoch_{record['epoch']:03d}", [
                dict(row, metric="simclr_loss", value=record["loss"]),
                dict(row, metric="seconds", value=record["seconds"]),
            ])

        records = train_run(run, study.run_dir(run), device, use_bf16(device, study.precision), study.workers,
                            on_step=on_step, on_epoch=on_epoch)
        return {"epochs": len(records), "loss": records[-1]["loss"] if records else None}


STAGE = TrainStage()
