"""Provisional results while runs train: the whole-series stages on the epochs there are so far.

Some results read a run's whole series or its last epoch: the prototype metrics (whose model space
may be a run's last checkpoint), the RSA trajectories (each epoch against the final one), every
epoch aligned with the final one and the epoch a unit settles (alignment's tracking), trust (judged
in a last checkpoint's space), the atlases and the findings built on them all. While a run trains,
its newest epoch is not its last, so these are computed as if training had stopped there, into a
store of their own, ``STORE/provisional``, whose ``PROVISIONAL.json`` says through which epoch of
each run; the site marks them. The per-checkpoint results (prototypes, activations, probes, the
training log) are final as soon as they exist, so the provisional store links to them instead of
computing them again: a refresh computes only the summaries.

When every run has finished, the stages run on the real store and the provisional one is deleted:
the store equals the one made after training (`tests/test_watch.py`).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from ..atomic import write_text
from ..store import layout

FOLDER = "provisional"
MANIFEST = "PROVISIONAL.json"
# per-checkpoint results, final once written, that the provisional store reads through links
SHARED = [layout.ARRAYS, layout.ACTIVATIONS, "runs", f"{layout.METRICS}/probe", f"{layout.METRICS}/evolve",
          f"{layout.METRICS}/train"]
# what a reader finds provisional, as the site names it
RESULTS = ["prototype metrics", "RSA over training", "alignment and tracking", "trust", "atlases", "findings"]


def folder(study) -> Path:
    return Path(study.store) / FOLDER


def through(states: dict) -> dict[str, int]:
    """{run: newest epoch before which every planned epoch is complete}, for runs with epoch 0..k."""
    found = {}
    for name, state in states.items():
        prefix = [e for i, e in enumerate(state.planned) if set(state.planned[: i + 1]) <= state.complete]
        if len(prefix) >= 2:  # a series needs two epochs
            found[name] = prefix[-1]
    return found


def snapshot(study, upto: dict[str, int]):
    """The study as if each run had stopped at `upto[run]`, stored in the provisional folder.

    Epoch lists the study names (rsa snapshots, atlas epochs, aligned epochs) keep the epochs there
    are; a space named at a later epoch is left out until that epoch exists.
    """
    runs = [run.model_copy(update={"epochs": upto[run.name]}) if run.path is None else run
            for run in study.runs if run.name in upto]
    last = min(upto.values())

    def kept(epochs):
        return None if epochs is None else [e for e in epochs if e <= last] or [0]

    names = {run.name for run in runs}
    spaces = [s for s in study.analyze.spaces
              if isinstance(s, str) or s.run is None or (s.run in names and (s.epoch or 0) <= upto[s.run])]
    pairs = None if study.align.pairs is None else [p for p in study.align.pairs if set(p) <= names]
    track = None if study.align.track is None else [r for r in study.align.track if r in names]
    update = {"store": folder(study), "runs": runs,
              "rsa": study.rsa.model_copy(update={"snapshots": kept(study.rsa.snapshots), "epochs": kept(study.rsa.epochs)}),
              "analyze": study.analyze.model_copy(update={"spaces": spaces}),
              "align": study.align.model_copy(update={"epochs": kept(study.align.epochs), "pairs": pairs, "track": track}),
              "width": None}
    if study.atlas is not None:
        atlas_runs = None if study.atlas.runs is None else [r for r in study.atlas.runs if r in names]
        together = [group for group in study.atlas.together if set(group) <= names]
        update["atlas"] = study.atlas.model_copy(update={"epochs": kept(study.atlas.epochs), "runs": atlas_runs,
                                                        "together": together})
    return study.model_copy(update=update)


def refresh(study, states: dict, progress=None):
    """Bring the provisional results up to the complete epochs of every run, computing again only
    what the new epochs make stale (`provisional_reuse`); returns the snapshot study they were
    computed for (None when no run has two complete epochs yet). Runs in this process: its jobs are
    small, and they read checkpoints through `only_epochs`, which a worker elsewhere would not see."""
    from ..nets.checkpoint_files import only_epochs
    from .provisional_reuse import forget_stale, reuse_key

    upto = through(states)
    if not upto:
        return None
    started = time.perf_counter()
    view = snapshot(study, upto)
    key = reuse_key(view)
    if not forget_stale(folder(study), read(study), upto, key):
        _fresh_store(study)
    visible = {name: {e for e in states[name].planned if e <= upto[name]} for name in upto}
    with only_epochs(visible):
        seconds = _summaries(view, visible, progress)
    manifest = {"through": upto, "results": RESULTS, "seconds": round(time.perf_counter() - started, 3),
                "stage_seconds": seconds, "key": key}
    write_text(folder(study) / MANIFEST, json.dumps(manifest, indent=1))
    return view


def draw(study, view) -> None:
    """The study's site drawn from the provisional store (its pages mark what is provisional), or,
    before there is one, from the real store. The figures wait for the end of training: drawing
    them all took 14 s beside the site's 0.8 s on a 3-epoch study, and the pages show the same results."""
    from ..report.site import write_site

    write_site(view if view is not None else study, out=Path(study.store) / "site")


def _fresh_store(study) -> None:
    """An empty provisional store whose per-checkpoint results are links to the real store's."""
    root = folder(study)
    shutil.rmtree(root, ignore_errors=True)
    for relative in SHARED:
        source = Path(study.store) / relative
        if source.exists():
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).symlink_to(source.resolve(), target_is_directory=True)
    root.mkdir(parents=True, exist_ok=True)


def _summaries(view, visible: dict[str, set[int]], progress) -> dict[str, float]:
    """The whole-series stages, in `run`'s order, on the snapshot study; returns each one's seconds.
    Trust plans a job per stored prototype epoch (its arrays have every epoch, as the prototypes'):
    here only the visible ones."""
    from .execution import execute
    from .rdms import STAGE as rdms
    from .trust import STAGE as trust
    from .verbs import align, analyze, atlas

    def trust_step(view, progress):
        execute(trust, view, None, None, progress, only=lambda job: job.key[1] in visible[job.key[0]])

    steps = {"prototype metrics": analyze,
             "rsa": lambda view, progress: execute(rdms, view, None, None, progress),  # activations: made live
             "alignment": align, "trust": trust_step}
    if view.atlas is not None:
        steps["atlases"] = atlas
    seconds = {}
    for name, step in steps.items():
        started = time.perf_counter()
        step(view, progress=progress)
        seconds[name] = round(time.perf_counter() - started, 3)
    return seconds


def read(study) -> dict | None:
    """The manifest of the provisional results there are now (None: there are none)."""
    path = folder(study) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def discard(study) -> None:
    """Training is over and the real results are stored: the provisional ones go."""
    shutil.rmtree(folder(study), ignore_errors=True)
