"""Trust of the prototypes over training: when does each layer's visualization become faithful?

`trust_over_training.png`: a column per layer, a row per score (the share of trustworthy
prototypes first, then path similarity, robustness, plausibility, spectral naturalness); in each
panel a thin line per run (mean over repeats) coloured by condition, and the condition's mean ± sd.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .figures import metric_grid

ROWS = {
    "trust_share": "share trustworthy",
    "trust_path_similarity": "path similarity\n(chance 0)",
    "trust_robustness": "robustness\n(1: nothing lost)",
    "trust_plausibility": "plausibility\n(chance 0)",
    "trust_spectral_naturalness": "spectral distance\n(1: a stimulus image)",
}


def trust_frame(metrics: pd.DataFrame) -> pd.DataFrame:
    """The trust rows, one value per (run, condition, epoch, layer, metric): the mean over repeats."""
    rows = metrics[metrics["metric"].isin(list(ROWS)) & metrics["layer"].notna()]
    keys = ["run", "condition", "epoch", "layer", "metric"]
    return rows.groupby(keys, observed=True)["value"].mean().reset_index()


def trust_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per run and layer, the first and last epoch's share trustworthy and mean scores (the CLI's table)."""
    frame = trust_frame(metrics)
    if frame.empty:
        return frame
    wide = frame.pivot_table(index=["run", "layer", "epoch"], columns="metric", values="value").reset_index()
    ends = wide.groupby(["run", "layer"])["epoch"].transform(lambda e: (e == e.min()) | (e == e.max()))
    wide = wide[ends.astype(bool)]
    names = {key: label.split("\n")[0] for key, label in ROWS.items()}
    return wide.rename(columns=names)[["run", "layer", "epoch", *[names[k] for k in ROWS if k in wide]]]


def trust_figures(study, metrics: pd.DataFrame, out: Path) -> list[Path]:
    """`trust_over_training.png` (+ PDF), when trust scores are stored."""
    frame = trust_frame(metrics)
    if frame.empty:
        return []
    def first_row_share(ax, metric, layer, row) -> None:
        if row == 0:
            ax.set_ylim(-0.02, 1.02)

    return metric_grid(frame, study.layers, ROWS, "Can the prototypes be trusted? Trust scores over training",
                       out / "trust_over_training", first_row_share)
