"""`execute`: plan a stage's jobs, skip the stored ones, prepare the store once, run the rest.

It joins the two halves of the job layer, the stages and the executors, so it lives above both.
Jobs report through `emit`; their events (started, progress, finished, failed) become progress
bars here, so no stage keeps a callback signature of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..executors import LocalExecutor
from ..jobs import Event, Job, Stage
from ..runtime import resolve_device
from .progress import Bars


@dataclass
class Outcome:
    """What `execute` did: the jobs planned, those already stored, and each finished job's stats."""

    planned: list[Job]
    skipped: list[Job]
    finished: dict[Job, dict] = field(default_factory=dict)

    @property
    def done_now(self) -> int:
        return len(self.finished)


def execute(stage: Stage, study, executor=None, runs: list[str] | None = None, progress=None,
            device=None, only: Callable[[Job], bool] | None = None) -> Outcome:
    """Plan the stage's jobs, skip the stored ones, prepare the store once, and run the rest.

    `executor` defaults to the in-process `LocalExecutor`; `progress` is a rich Progress (or None)
    that gets one bar per job group. `only` keeps the planned jobs it accepts (`watch`: those
    whose checkpoint is complete).
    """
    executor = executor or LocalExecutor()
    # a wrong device before anything else (only its name, where the jobs run elsewhere)
    resolve_device(device if device is not None else study.device, here=not getattr(executor, "remote", False))
    jobs = [job for job in stage.plan(study, runs) if only is None or only(job)]
    if jobs:
        stage.prepare(study, jobs)  # settings checked against the store, arrays created: before any job
    todo = [job for job in jobs if not stage.is_done(study, job)]
    waiting = set(todo)
    outcome = Outcome(jobs, [job for job in jobs if job not in waiting])
    bars = Bars(progress, stage.name, jobs, outcome.skipped)
    if not todo:
        return outcome

    def on_event(event: Event) -> None:
        if event.kind == "finished":
            outcome.finished[event.job] = event.stats
        bars.update(event)

    executor.run(study, todo, device, on_event)
    return outcome
