"""The stages of a study: one module per stage, each a `StudyStage` with `plan` and `run`.

    training           train        SimCLR, one checkpoint per epoch
    linear_probes      probe        linear probes on each checkpoint's frozen features
    prototypes         evolve       an activation-maximizing image per unit (the engine, synth/)
    prototype_metrics  analyze      diversity, rate of change, consistency of the prototypes
    activations        rsa (first)  the stimulus set's activations, stored once for every analysis
    rdms               rsa          RDMs over training and their trajectory metrics
    alignment          align        convergent learning between runs and over training
    trust              trust        trust scores of every prototype against the stimulus set
    tuning             tuning       hue, orientation, frequency and contrast curves of every unit
    atlases            atlas        activation atlases over training
    width_study        width        nets of several widths, read linearly on a new task

`watch` follows runs while they train (`protoscope watch`). `verbs` holds the function of each CLI command (`protoscope.stages.<verb>(study)`), `execute` runs
any stage, and `STAGES` maps each stage's name to it (imported on first use, so the CLI starts
without torch).
"""

from __future__ import annotations

from .execution import Outcome, execute
from .progress import JobLog, new_progress
from .verbs import (align, analyze, atlas, draw_figures, evolve, export, final_table, probe, report, rsa, run,
                    train, trust, tuning, width)
from .watch import watch

MODULES = {"train": "training", "probe": "linear_probes", "evolve": "prototypes", "analyze": "prototype_metrics",
           "activations": "activations", "rsa": "rdms", "align": "alignment", "trust": "trust", "tuning": "tuning", "atlas": "atlases",
           "width": "width_study"}  # stage name -> its module


def __getattr__(name: str):
    if name == "STAGES":
        import importlib

        return {stage: importlib.import_module(f"{__name__}.{module}").STAGE for stage, module in MODULES.items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["JobLog", "MODULES", "Outcome", "STAGES", "align", "analyze", "atlas", "draw_figures", "evolve", "execute",
           "export", "final_table", "new_progress", "probe", "report", "rsa", "run", "train", "trust", "tuning", "watch", "width"]
