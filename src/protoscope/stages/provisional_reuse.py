"""Which provisional results a refresh may keep: those whose inputs did not change.

A refresh (`provisional.refresh`) reruns the whole-series stages on the snapshot study; each stage
skips the jobs whose results are stored, so what this module deletes first is exactly what gets
computed again. Between two refreshes some runs gained epochs (`changed`). Then:

- a stage whose section of the snapshot study changed (an atlas epoch came within reach, a space's
  checkpoint moved) loses all its results;
- a result of a changed run goes (every store here is laid out by run, or by a pair or group of
  runs whose name holds theirs: `a~b`, `a+b`), and so does every result read through a changed
  run's last checkpoint: a space built on it, or the prototypes it judges for trust; the pairs'
  alignment (one job aligns every pair at the last epoch they share) is done again when a pair's
  epoch moved; an atlas whose epochs the study names keeps them until its section changes;
- trust is kept per epoch: a (run, epoch) job reads that checkpoint and its prototypes, the
  judging run's last checkpoint, and its pair's alignment at that epoch (pairs are aligned at the
  last epoch both have). Only the new epochs, and the epoch the pair was aligned at before when
  that moved, are scored again, unless the judge changed or the alignment's section did.

So a refresh costs what the new epochs add, plus the series of the runs that gained them: the
rate of change, the RDMs against the new last epoch, the tracking, the atlas of their group.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from ..store import layout

# every result a whole-series stage writes in the provisional store (its settings record included)
OUTPUTS = {
    "analyze": [layout.UNIT_METRICS, layout.EMBEDDINGS, f"{layout.METRICS}/analyze"],
    "rsa": [layout.RDMS, f"{layout.METRICS}/rsa"],
    "align": [layout.ALIGN, f"{layout.METRICS}/align"],
    "trust": [layout.TRUST, f"{layout.METRICS}/trust"],
    "atlas": [layout.ATLAS, f"{layout.METRICS}/atlas"],
}


def reuse_key(view) -> dict:
    """What the snapshot's stages depend on beyond the runs' epochs: each stage's section, and which
    run's last checkpoint judges each run's trust."""
    from .alignment import align_pairs
    from .trust import judge_run, partner_run

    def section(value) -> str:
        return "" if value is None else value.model_dump_json()

    return {"sections": {"analyze": section(view.analyze), "rsa": section(view.rsa), "align": section(view.align),
                         "trust": section(view.trust), "atlas": section(view.atlas)},
            "judges": {run.name: judge_run(view, run) for run in view.runs},
            "partners": {run.name: partner_run(view, run) for run in view.runs},
            "aligned": {f"{a}~{b}": _aligned_at(view, a, b) for a, b in align_pairs(view)}}


def _aligned_at(view, a: str, b: str):
    """The epoch a pair is aligned at: fixed by `align.epochs` (None here: its section says), else the
    last both have; "?" for a run folder, whose epochs the snapshot does not hold."""
    if view.align.epochs is not None:
        return None
    runs = view.run(a), view.run(b)
    return "?" if any(run.path is not None for run in runs) else min(run.epochs for run in runs)


def forget_stale(root: Path, before: dict | None, upto: dict[str, int], key: dict) -> bool:
    """Delete from the provisional store `root` what the new epochs `upto` make stale, given the
    manifest of the refresh `before`; returns False when nothing can be kept (start afresh)."""
    if before is None or "key" not in before:
        return False
    previous = before["through"]
    changed = {run for run, epoch in upto.items() if previous.get(run) != epoch}
    changed |= set(previous) - set(upto)
    for stage, text in key["sections"].items():
        if before["key"]["sections"].get(stage) != text:
            _remove(root, OUTPUTS[stage])
    spaces = _space_runs(key["sections"]["analyze"])
    if changed & spaces:
        _remove(root, OUTPUTS["analyze"])
    if before["key"]["sections"].get("align") != key["sections"]["align"]:
        _remove(root, OUTPUTS["trust"])  # transfer reads the alignment
    judged = {run for run, judge in key["judges"].items()
              if judge in changed or before["key"]["judges"].get(run) != judge
              or before["key"]["partners"].get(run) != key["partners"][run]}
    for stage in ("analyze", "rsa"):
        _forget_runs(root, OUTPUTS[stage], changed)
    _forget_runs(root, [f"{layout.ALIGN}/track", f"{layout.METRICS}/align/track"], changed)
    if json.loads(key["sections"]["atlas"] or "{}").get("epochs") is None:  # else its epochs are in its section
        _forget_runs(root, OUTPUTS["atlas"], changed)
    if changed and (before["key"].get("aligned") != key["aligned"] or "?" in key["aligned"].values()):
        # one pairs job aligns every pair at one epoch (the last they share): done again when one moved
        _remove(root, [f"{layout.METRICS}/align/pairs", *[p.relative_to(root).as_posix()
                                                          for p in (root / layout.ALIGN).glob("epoch_*")]])
    _forget_runs(root, OUTPUTS["trust"], judged)
    for run in set(upto) - judged:
        stale = {e for e in range(previous.get(run, -1), upto[run] + 1)} if run in changed else set()
        partner = key["partners"][run]
        if partner is not None and partner in previous and run in previous:
            aligned = min(previous[run], previous[partner])
            if aligned != min(upto[run], upto.get(partner, -1)):
                stale.add(aligned)
        _forget_trust_epochs(root, run, stale)
    return True


def _space_runs(analyze_section: str) -> set[str]:
    """The runs whose checkpoints are spaces of the prototype metrics."""
    spaces = json.loads(analyze_section).get("spaces", []) if analyze_section else []
    return {space["run"] for space in spaces if isinstance(space, dict) and space.get("run")}


def _remove(root: Path, relatives: list[str]) -> None:
    for relative in relatives:
        shutil.rmtree(root / relative, ignore_errors=True)


def _names_a_run(name: str, runs: set[str]) -> bool:
    """Whether a file or folder name is a run's, or a pair's or group's holding one (`a~b`, `a+b`)."""
    stem = re.sub(r"\.(parquet|nc|h5|json)$", "", name)
    return bool(runs & set(re.split(r"[~+]", stem)))


def _forget_runs(root: Path, relatives: list[str], runs: set[str]) -> None:
    """Delete every file or folder under `relatives` named after one of `runs` (links not followed)."""
    if not runs:
        return
    for relative in relatives:
        for here, folders, files in os.walk(root / relative, followlinks=False):
            for name in [*folders, *files]:
                if _names_a_run(name, runs):
                    path = Path(here) / name
                    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            folders[:] = [f for f in folders if not _names_a_run(f, runs)]


def _forget_trust_epochs(root: Path, run: str, epochs: set[int]) -> None:
    """Un-mark the trust of `run` at `epochs`: those jobs run again, the rest are kept."""
    import numpy as np
    import zarr

    if not epochs:
        return
    for group_path in (root / layout.TRUST / run).glob("*/zarr.json"):
        group = zarr.open_group(group_path.parent, mode="r+", zarr_format=3)
        stale = np.isin(np.asarray(group["epoch"][:]), sorted(epochs))
        done = np.asarray(group["done"][:])
        done[stale] = False
        group["done"][:] = done
    for path in (root / layout.METRICS / "trust" / run).glob("epoch_*.parquet"):
        if int(path.stem.removeprefix("epoch_")) in epochs:
            path.unlink()
