"""Executors: who runs a stage's jobs, and where.

An executor has one method, ``run(study, jobs, device, on_event)``: run every
job (each through `jobs.run_job`, the module-level function a remote worker can
unpickle) and report ``Event``s — started, progress, finished (with the job's
stats), failed (then re-raise). `LocalExecutor` runs them in this process, in
order, as the stages always did. A distributed executor (Ray: one task per
job, retries, bounded tasks in flight) implements the same method; since a
job's result depends only on its key and the study, it may run them anywhere.
"""

from __future__ import annotations

from typing import Callable

from .jobs import Event, Job, run_job


class LocalExecutor:
    """Jobs in this process, one after another, in plan order (the default)."""

    name = "local"

    def run(self, study, jobs: list[Job], device, on_event: Callable[[Event], None]) -> None:
        for job in jobs:
            on_event(Event("started", job))

            def emit(info: str = "", job=job, **stats) -> None:
                on_event(Event("progress", job, info, stats))

            try:
                result = run_job(study, job, device, emit)
            except BaseException as exc:
                on_event(Event("failed", job, error=exc))
                raise
            on_event(Event("finished", job, stats=result))


EXECUTORS = {"local": LocalExecutor}


def make_executor(name: str = "local", **options):
    """An executor by name; unknown names are an error listing the valid ones."""
    from .errors import UserError

    if name not in EXECUTORS:
        raise UserError(f"Unknown executor {name!r}; valid: {', '.join(EXECUTORS)}")
    return EXECUTORS[name](**options)
