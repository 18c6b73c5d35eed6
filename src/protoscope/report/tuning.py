"""What the units are tuned to over training: does a layer become colour- or orientation-selective?

`tuning_over_training.png`: a column per layer, a row per index (colour selectivity with its chance
level, orientation selectivity, preferred frequency, contrast c50); in each panel a thin line per
run coloured by condition, and the condition's mean ± sd over seeds (epoch 0: the random init).
The findings rows (`findings.tuning_findings`) compare the conditions at the last epoch.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .figures import metric_grid

ROWS = {
    "tuning_colour_selectivity": "colour selectivity\n(η² of hue; 0: blind)",
    "tuning_orientation_selectivity": "orientation selectivity\n(1 − circ. variance)",
    "tuning_preferred_frequency": "preferred frequency\n(cycles / image)",
    "tuning_contrast_c50": "contrast c50",
}


def tuning_frame(metrics: pd.DataFrame) -> pd.DataFrame:
    rows = metrics[metrics["metric"].str.startswith("tuning_", na=False) & metrics["layer"].notna()]
    return rows[["run", "condition", "seed", "epoch", "layer", "metric", "value"]]


def tuning_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per condition and layer, the mean over runs of colour and orientation selectivity at the
    first and the last epoch (the CLI's table)."""
    frame = tuning_frame(metrics)
    frame = frame[frame["metric"].isin(["tuning_colour_selectivity", "tuning_orientation_selectivity"])]
    if frame.empty:
        return frame
    ends = frame.groupby("run")["epoch"].transform(lambda e: (e == e.min()) | (e == e.max())).astype(bool)
    frame = frame[ends].assign(when=lambda f: f["epoch"].map(lambda e: "init" if e == 0 else "last"))
    wide = frame.pivot_table(index=["condition", "layer"], columns=["metric", "when"], values="value")
    wide.columns = [f"{metric.removeprefix('tuning_').replace('_selectivity', '')} {when}" for metric, when in wide.columns]
    return wide.reset_index()


def tuning_figures(study, metrics: pd.DataFrame, out: Path) -> list[Path]:
    """`tuning_over_training.png` (+ PDF), when tuning is stored."""
    frame = tuning_frame(metrics)
    if frame.empty:
        return []
    def chance(ax, metric, layer, row) -> None:
        if metric == "tuning_colour_selectivity":
            shuffled = frame[(frame["metric"] == "tuning_colour_selectivity_chance") & (frame["layer"] == layer)]
            line = shuffled.groupby("epoch")["value"].mean()
            ax.plot(line.index, line.values, color="grey", ls=":", lw=1, label="chance (hues shuffled)")

    return metric_grid(frame, study.layers, ROWS, "What the units are tuned to, over training",
                       out / "tuning_over_training", chance)
