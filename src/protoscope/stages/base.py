"""The base every stage is written on: what all stages need from a study, written once.

A stage answers the four questions of `jobs.Stage` (`plan`, `prepare`, `is_done`, `run`); the
plumbing they share is here: the runs a command selects, a run's checkpoints (with the one
message for a run that has none), its model (one per-process cache), the stage's settings
(compared when planned, recorded with the first result), and the first columns of its rows.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Callable

from ..errors import UserError
from ..jobs import Job

_CACHE: dict = {}  # (stage, kind) -> (key, value): what one process keeps between a stage's jobs


def no_checkpoints(study, run) -> str:
    """The one message for a run without checkpoints; its remedy depends on who writes them."""
    folder = study.run_dir(run)
    remedy = ("train it first (protoscope train)" if run.path is None
              else "protoscope reads epoch_<n>.<ext>, one file per epoch (0: the random init; ext: safetensors, pt, "
                   "pth, ckpt, bin or pth.tar), or Lightning's epoch=<k>-step=<s>.ckpt; name another "
                   "pattern in the run's `checkpoints` (e.g. 'model_{epoch_index}.pt')")
    return f"Run {run.name!r} has no checkpoints in {folder}; {remedy}."


def checkpoints(study, run) -> dict[int, Path]:
    """{epoch: file} of a run; a run without any is refused. While `watch` plans (`planned_epochs`),
    every epoch the run will have, each at the file it will be written to."""
    from ..nets.checkpoint_files import run_checkpoints

    files = run_checkpoints(study, run)
    if not files:
        raise UserError(no_checkpoints(study, run))
    if _WATCHING.get():
        from ..nets.checkpoints import checkpoint_name

        return {e: files.get(e, study.run_dir(run) / checkpoint_name(e)) for e in planned_epochs(study, run)}
    return files


_WATCHING: ContextVar[bool] = ContextVar("watching", default=False)


@contextmanager
def watching():
    """Plan stages over the epochs runs will have, not those they have: arrays are made for the whole
    run, so a store filled while training has the shape it has when made after it (`watch.py`)."""
    token = _WATCHING.set(True)
    try:
        yield
    finally:
        _WATCHING.reset(token)


def planned_epochs(study, run) -> list[int]:
    """The epochs a run will have: 0 … `epochs` for a run this study trains; for a run folder, the
    plan its writer left (`protoscope.Checkpointer`'s `training.plan`), or it is refused."""
    from ..train.checkpointer import read_plan

    if run.path is None:
        return list(range(run.epochs + 1))
    plan = read_plan(study.run_dir(run))
    if plan is None:
        raise UserError(f"Run {run.name!r}: watching {study.run_dir(run)} needs the epochs it will have; save them "
                        "with protoscope.Checkpointer(folder, model, epochs=N) or protoscope.lightning_callback, "
                        "or run the stages after training.")
    return plan


def checkpoints_at(study, run, wanted: list[int] | None, field: str) -> dict[int, Path]:
    """{epoch: file} for an analysis: `wanted` (default: every checkpoint the run will have).

    A run this study trains is planned at every epoch it will reach, so an untrained one is refused
    here, not halfway (while `watching`, so is a run folder); `field` is the setting a user changes to
    ask for other epochs.
    """
    from ..nets.checkpoint_files import run_checkpoints

    files = run_checkpoints(study, run)
    if run.path is not None and not files:
        raise UserError(no_checkpoints(study, run))
    if _WATCHING.get():
        files = checkpoints(study, run)  # every epoch the run will have: a job runs once its file is complete
    planned = list(files) if run.path is not None else list(range(run.epochs + 1))
    epochs = planned if wanted is None else sorted(set(int(e) for e in wanted))
    missing = [e for e in epochs if e not in files]
    if missing:
        remedy = "train it first (protoscope train) or " if run.path is None else ""
        raise UserError(f"Run {run.name!r} has no checkpoint for epochs {missing} in {study.run_dir(run)} "
                        f"(it has {list(files) or 'none'}); {remedy}change `{field}`.")
    return {e: files[e] for e in epochs}


def build(run):
    """A fresh model of the run's architecture (random weights: load a checkpoint into it)."""
    from ..nets.models import run_model

    return run_model(run)


def check_architectures(study, runs) -> None:
    """Every layer the study names — its layers, the probe's and those of the rsa, align and atlas
    sections — exists in each architecture the runs train, and each has a probe layer: checked
    before anything trains, not when the first analysis meets them an hour later."""
    from ..nets.layers import check_layers
    from ..nets.models import feature_layer

    sections = [study.rsa, study.align, study.atlas]
    named = list(study.layers) + [layer for spec in sections if spec is not None for layer in (spec.layers or [])]
    for arch in dict.fromkeys(architecture(run) for run in runs):
        model = build(next(run for run in runs if architecture(run) == arch))
        check_layers(model, named + [study.probe.layer or feature_layer(arch[0], model)])


def architecture(run) -> tuple:
    """What a run's model depends on (runs that share it share a cached model)."""
    return (run.arch, run.width, run.small_input, repr(sorted(run.arch_options.items())), run.head,
            repr(sorted(run.layouts.items())), repr(sorted(run.forward_kwargs.items())))


class StudyStage:
    """Shared behaviour of every stage; a subclass sets `name` and writes `plan` and `run`.

    `settings(study)`, when a stage has them, are compared with the store's in `plan` (a changed
    setting stops the stage before any work) and recorded just before the first result is written
    (`record_settings`), so a stage that fails first records nothing.
    """

    name = ""

    @property
    def ref(self) -> str:
        """How a worker finds this stage: every stage module names its instance STAGE."""
        return f"{type(self).__module__}:STAGE"

    def job(self, key: tuple, group: str = "") -> Job:
        return Job(self.ref, key, group)

    @staticmethod
    def runs(study, names: list[str] | None) -> list:
        """The runs a command names (each checked), or every run when it names none."""
        return [study.run(name) for name in names] if names else list(study.runs)

    def cached(self, kind: str, key, make: Callable[[], object]):
        """One value per (stage, kind) per process, rebuilt when its key changes.

        A cache of what depends on the study and a run's architecture only (a job loads its own
        weights into the model): a job run alone, in a fresh process, builds the same thing.
        """
        slot = _CACHE.get((self.name, kind))
        if slot is None or slot[0] != key:
            slot = _CACHE[self.name, kind] = (key, make())
        return slot[1]

    def traced(self, run, layers: tuple[str, ...], device):
        """A model and its graph truncated at `layers` (sharing the model's parameters): traced once per
        process, each job loading its own checkpoint into the model."""
        from ..nets.layers import truncate

        def make():
            model = build(run)
            return model, truncate(model.to(device).eval(), list(layers)).to(device)

        return self.cached("traced", (architecture(run), tuple(layers), str(device)), make)

    def settings(self, study) -> dict | None:
        return None

    def check_settings(self, study) -> None:
        from ..store import check_settings

        settings = self.settings(study)
        if settings is not None:
            check_settings(study.store, self.name, settings, record=False)

    def record_settings(self, study) -> None:
        from ..store import check_settings

        check_settings(study.store, self.name, self.settings(study))

    def prepare(self, study, jobs: list[Job]) -> None:
        """Nothing to create before the jobs, unless a stage says otherwise."""

    @staticmethod
    def row(run, **fields) -> dict:
        """A metrics row's first columns for a run."""
        return {"run": run.name, "condition": run.condition, "seed": run.seed, **fields}
