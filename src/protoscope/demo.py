"""The demo: the built-in study, run end to end, with a summary a person can read."""

from __future__ import annotations

from pathlib import Path

from .study import Study, builtin_study, load_study

# `--quick`: the same pipeline at a size that runs in well under two minutes (tests use it).
QUICK = {
    "defaults": {"epochs": 2, "data": {"epoch_size": 384}, "optimizer": {"batch_size": 64, "warmup_steps": 2}},
    "probe": {"train_size": 256, "test_size": 128, "adam_epochs": 40},
    "synth": {"pool_size": 32, "adam_steps": 4, "cma_generations": 2, "rf_samples": 8},
    "rsa": {"images": 64},
    "align": {"images": 64, "mi_samples": 1000, "sparse_iter": 200},
    "tuning": {"images": 32},
    "atlas": {"epochs": [0, 1, 2], "images": 300, "grid": 6, "min_count": 4, "adam_steps": 4, "pool_size": 16},
    "width": {"families": ["conv"], "widths": [4, 16], "seeds": [0], "epochs": 2, "train_size": 300, "test_size": 100},
    "workers": 0,
    "runs": [{"condition": ["clrjit", "keepclr"], "seed": 0}, {"condition": "clrjit", "seed": 1}],  # two seeds to align
}


STUDIES = ("demo", "digits")  # shipped in protoscope/studies/: the shapes demo, and real handwriting


def demo_study(out: str | Path | None = None, quick: bool = False, name: str = "demo") -> Study:
    """A built-in study (`STUDIES`), its store in `out` (default out/<name>); `quick` shrinks it."""
    overrides = dict(QUICK) if quick else {}
    if name != "demo":
        overrides.pop("width", None)  # only the demo has a width study
    overrides["store"] = str(Path(out or f"out/{name}").resolve())
    return load_study(builtin_study(name), overrides)
