"""Progress a person can watch: rich bars on a terminal, one line per job event in a log."""

from __future__ import annotations

import sys
import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..jobs import Event, Job


def new_progress(enabled: bool = True):
    """Rich progress bars on a terminal; one line per job event (`JobLog`) when stdout is a file or
    pipe (a batch job's log, a test that watches a run)."""
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
        self.stream.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        self.stream.flush()


class Bars:
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
