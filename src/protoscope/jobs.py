"""The job seam: every stage is a plan of small jobs, and one `execute` runs the ones not done.

A **job** is a frozen, picklable value: the stage that runs it (a dotted
reference, so a worker on another machine can find it), a key (the unit of work
the stage resumes at, e.g. evolve's ``(run, layer, epoch)``) and a group (the
progress bar it counts towards, usually the run). Its result depends only on
its key and the study: nothing passes between jobs in memory, so any executor
may run them in any order, on any machine.

A **stage** answers four questions (`Stage`): which jobs does the study need
(`plan`), what must hold and exist before any job runs (`prepare`: settings
checked against the store, arrays created), is this one stored (`is_done`),
and run this one (`run`).
Jobs report through `emit(info, **stats)`; `execute` turns their events
(started, progress, finished, failed) into progress bars, so no stage keeps a
callback signature of its own.

This module imports nothing from the stages: dependencies point down.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable, Protocol

Emit = Callable[..., None]


@dataclass(frozen=True)
class Job:
    """One unit of work: `stage` (``module:attribute`` of its Stage), `key`, and the bar it counts in."""

    stage: str
    key: tuple
    group: str = ""

    def __str__(self) -> str:
        """e.g. ``clrjit-s0/layer1/3``, or ``pairs/2/clrjit-s0~clrjit-s1/layer1+layer2`` for tuples."""
        def part(value, joins=("+", "~")) -> str:
            if isinstance(value, tuple):
                return joins[0].join(part(v, joins[1:] or joins) for v in value)
            return str(value)

        return "/".join(part(k) for k in self.key)


@dataclass(frozen=True)
class Event:
    """What a job reports: `kind` is started, progress, finished or failed."""

    kind: str
    job: Job
    info: str = ""
    stats: dict = field(default_factory=dict)
    error: BaseException | None = None


class Stage(Protocol):
    name: str

    def plan(self, study, runs: list[str] | None) -> list[Job]: ...

    def is_done(self, study, job: Job) -> bool: ...

    def prepare(self, study, jobs: list[Job]) -> None: ...

    def run(self, study, job: Job, device, emit: Emit) -> dict: ...


def stage_of(job: Job) -> Stage:
    """The Stage object a job names (imported on first use: how a remote worker finds it)."""
    module, _, attribute = job.stage.partition(":")
    return getattr(importlib.import_module(module), attribute)


def run_job(study, job: Job, device=None, emit: Emit | None = None) -> dict:
    """Run one job; the function every executor calls (module-level, so it pickles for remote workers).

    Returns the job's stats (a small dict). `device` None means the study's own device. The study
    travels as a value (it pickles); the store it names must be a path every worker sees.
    """
    from .runtime import resolve_device

    stage = stage_of(job)
    return stage.run(study, job, resolve_device(device if device is not None else study.device),
                     emit or (lambda info="", **stats: None)) or {}


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
            device=None) -> Outcome:
    """Plan the stage's jobs, skip the stored ones, prepare the store once, and run the rest.

    `executor` defaults to the in-process `LocalExecutor`; `progress` is a rich Progress (or None)
    that gets one bar per job group.
    """
    from .executors import LocalExecutor
    from .runtime import resolve_device

    executor = executor or LocalExecutor()
    # a wrong device before anything else (only its name, where the jobs run elsewhere)
    resolve_device(device if device is not None else study.device, here=not getattr(executor, "remote", False))
    jobs = stage.plan(study, runs)
    if jobs:
        stage.prepare(study, jobs)  # settings checked against the store, arrays created: before any job
    todo = [job for job in jobs if not stage.is_done(study, job)]
    waiting = set(todo)
    outcome = Outcome(jobs, [job for job in jobs if job not in waiting])
    bars = _Bars(progress, stage.name, jobs, outcome.skipped)
    if not todo:
        return outcome

    def on_event(event: Event) -> None:
        if event.kind == "finished":
            outcome.finished[event.job] = event.stats
        bars.update(event)

    executor.run(study, todo, device, on_event)
    return outcome


class _Bars:
    """One progress bar per job group; job events advance them (a job may report a `fraction` done).

    A progress object with a `job_event(stage, event)` method (the CLI's `JobLog`) also gets each event.
    """

    def __init__(self, progress, name: str, jobs: list[Job], skipped: list[Job]):
        self.progress, self.name, self.tasks = progress, name, {}
        self.finished: dict[str, int] = {}
        self.running: dict[Job, float] = {}
        if progress is None:
            return
        for group in dict.fromkeys(job.group for job in jobs):
            total = sum(job.group == group for job in jobs)
            done = self.finished[group] = sum(job.group == group for job in skipped)
            label = f"{name} {group}".strip()
            self.tasks[group] = progress.add_task(label, total=total, completed=done,
                                                  info="stored" if done == total else "")

    def update(self, event: Event) -> None:
        if self.progress is None:
            return
        if hasattr(self.progress, "job_event"):
            self.progress.job_event(self.name, event)
        job, group = event.job, event.job.group
        if event.kind == "finished":
            self.running.pop(job, None)
            self.finished[group] += 1
            info = f"{job}"
        elif event.kind == "failed":
            self.running.pop(job, None)
            info = f"{job} failed"
        else:
            self.running[job] = float(event.stats.get("fraction", self.running.get(job, 0.0)))
            info = f"{job} {event.info}".strip()
        running = sum(f for j, f in self.running.items() if j.group == group)
        self.progress.update(self.tasks[group], completed=self.finished[group] + running, info=info)
