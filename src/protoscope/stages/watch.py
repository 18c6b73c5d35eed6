"""Watching runs while they train: each complete checkpoint's results as soon as it appears.

`protoscope watch STUDY.yaml` follows every run folder of the study (ours, while `protoscope
train` writes it in another shell, or a user's folder written by `protoscope.Checkpointer` or the
Lightning callback). Each round it looks for checkpoints that are complete (`nets/complete.py`:
a file still being written is never read) and runs, for those epochs, the stages whose jobs belong
to one checkpoint and read nothing later: the linear probes, the prototypes and the stimulus set's
activations. Their arrays are made for every epoch the run will have (`base.watching`), so the
store filled during training has the shape it would have had after it. What reads the whole series
or the last epoch (prototype metrics, RSA, alignment, trust, atlases, the findings) is computed
provisionally after each such round, in a store of its own (`provisional.py`), and the site is
drawn from it with those results marked. When every run has finished, every stage runs on the real
store and the provisional one goes: the store equals the one made after the fact
(`tests/test_watch.py`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from ..jobs import Job
from .base import planned_epochs, watching

# the stages watched live: verb -> (module, where a job's key holds its epoch)
LIVE = {"probe": ("protoscope.stages.linear_probes", 1), "evolve": ("protoscope.stages.prototypes", 2),
        "activations": ("protoscope.stages.activations", 1), "tuning": ("protoscope.stages.tuning", 1)}
OPTIONAL = {"tuning"}  # live only where the study has the section (`run` runs it only then)


@dataclass(frozen=True)
class RunState:
    """What one look at a run folder found."""

    planned: tuple[int, ...]  # the epochs it will have
    complete: frozenset[int]  # those whose checkpoint is completely written
    finished: bool  # nothing more will come
    last_written: float | None = None  # when the newest complete checkpoint was written (Unix time)

    @property
    def ready(self) -> bool:
        """Stages may plan this run: its first checkpoint (read when they prepare) is complete."""
        return bool(self.planned) and self.planned[0] in self.complete


def look(study, run) -> RunState:
    """The run folder now: planned epochs, the complete ones, and whether training is over."""
    from ..nets.checkpoint_files import run_checkpoints
    from ..nets.complete import is_complete
    from ..train.checkpointer import finished, read_plan

    folder = study.run_dir(run)
    files = run_checkpoints(study, run) if folder.is_dir() else {}
    if run.path is not None and not files and read_plan(folder) is None:
        return RunState((), frozenset(), False)  # its writer has not started yet
    planned = tuple(planned_epochs(study, run))  # a folder with checkpoints but no plan is refused
    complete = frozenset(e for e, path in files.items() if e in planned and is_complete(path))
    done = set(planned) <= complete and (run.path is None or finished(folder))
    last = max((files[e].stat().st_mtime for e in complete), default=None)
    return RunState(planned, complete, done, last)


def live_round(study, states: dict[str, RunState], progress=None, executor=None) -> int:
    """The live stages' jobs at every complete epoch of the ready runs; returns the jobs done now."""
    from importlib import import_module as stage_module

    from . import execution

    names = [name for name, state in states.items() if state.ready]
    if not names:
        return 0
    done = 0
    with watching():
        for verb, (module, epoch_at) in LIVE.items():
            if verb in OPTIONAL and getattr(study, verb) is None:
                continue

            def complete(job: Job, at=epoch_at) -> bool:
                return job.key[at] in states[job.key[0]].complete

            outcome = execution.execute(stage_module(module).STAGE, study, executor, names, progress, only=complete)
            done += outcome.done_now
    return done


def yield_to_training() -> int:
    """Half the cores for the watch's own jobs, unless the user chose (OMP_NUM_THREADS), at a lower
    priority than the training beside it: two processes that each spin a thread per core slow each
    other down far more than their shares (`bench/watch_beside.py`). Returns the threads it uses."""
    import os

    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))
    try:
        os.nice(10)  # and below the training's priority: where both want a core, training gets it
    except OSError:
        pass
    return torch.get_num_threads()


def watch(study, progress=None, executor=None, poll: float = 5.0, site: bool = True,
          sleep: Callable[[float], None] = time.sleep, on_round: Callable[[dict, int], None] | None = None) -> dict:
    """Follow the study's runs until every one has finished, then run every stage; returns
    {run: epochs seen complete}. After each round that added results, the whole-series results are
    computed provisionally on the epochs so far (`provisional.refresh`) and, with `site`, the site is
    drawn from them; the live status (`report/site/live.py`, read by a served page) after every
    round. `on_round(states, jobs done now, provisional manifest or None)` is told after each look. `protoscope watch` first calls
    `yield_to_training` (its own process; a library call leaves the caller's alone)."""
    from ..report.site.live import write_live
    from . import provisional
    from .verbs import run

    seen: dict[str, frozenset[int]] = {}
    view = None
    while True:
        states = {spec.name: look(study, spec) for spec in study.runs}
        fresh = any(state.complete - seen.get(name, frozenset()) for name, state in states.items())
        done_now = live_round(study, states, progress, executor) if fresh else 0
        seen = {name: state.complete for name, state in states.items()}
        finished = all(state.finished for state in states.values())
        if done_now and not finished and site:  # the new checkpoints' own results first: the refresh takes longer
            provisional.draw(study, view)
            write_live(study, states, provisional.read(study))
        view = provisional.refresh(study, states, progress) if done_now and not finished else view
        if on_round is not None:
            on_round(states, done_now, provisional.read(study) if done_now and view is not None else None)
        if finished:
            run(study, progress=progress, executor=executor)  # the whole-series stages, the figures, the site
            provisional.discard(study)  # the site drawn by `run` already reads the real store only
            if site:
                write_live(study, states)
            return {name: sorted(epochs) for name, epochs in seen.items()}
        if done_now and site:
            provisional.draw(study, view)
        if site:
            write_live(study, states, provisional.read(study))
        sleep(poll)
