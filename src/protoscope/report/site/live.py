"""The site's live status while `protoscope watch` follows training: `data/live.js`.

A page served over HTTP (`protoscope serve`) loads this file every few seconds. When its
`generation` changes, the site's data were written again, and the page reloads them: the epoch
slider grows without a reload. The page also says how far each run has trained, when its last
checkpoint came, and which results wait for the end of training. Opened from disk, the page never
asks for it and stays as it is.
"""

from __future__ import annotations

from pathlib import Path

from .build import script, write_if_changed, SiteResult

# results that read the whole series, before their first provisional computation (`stages/watch.py`)
AT_THE_END = ["prototype metrics", "RSA", "alignment", "trust", "atlases", "the width study"]


def live_status(states: dict, provisional: dict | None = None) -> dict:
    """What the page shows, from `watch.look`'s state of each run and the manifest of the
    provisional results (`stages/provisional.py`), when there are some."""
    runs = {name: {"complete": len(state.complete), "planned": len(state.planned),
                   "latest": max(state.complete, default=None), "last": max(state.planned, default=None),
                   "written": state.last_written, "finished": state.finished}
            for name, state in states.items()}
    finished = all(state.finished for state in states.values())
    # a new generation when checkpoints came, when training ended, and when provisional results came
    generation = f"{sum(len(state.complete) for state in states.values()) + int(finished)}" + (
        f".{sum(provisional['through'].values())}" if provisional and not finished else "")
    return {"generation": generation,
            "runs": runs, "finished": finished, "provisional": None if finished else provisional,
            "waiting": [] if finished or provisional else AT_THE_END}


def write_live(study, states: dict, provisional: dict | None = None, out: Path | None = None) -> Path:
    """Write `data/live.js` of the study's site (only when it changed); returns its path."""
    site = Path(out) if out else Path(study.store) / "site"
    write_if_changed(site, "data/live.js", script("live", live_status(states, provisional)), SiteResult(site))
    return site / "data" / "live.js"
