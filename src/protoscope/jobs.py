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
and run this one (`run`). Jobs report through `emit(info, **stats)`.

An executor (`executors.py`) runs jobs; `stages.execute` plans a stage, skips
what is stored and hands the rest to one. This module imports neither:
dependencies point down.
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
