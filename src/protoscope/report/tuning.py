"""What the units are tuned to over training: does a layer become colour- or orientation-selective?

`tuning_over_training.png`: a column per layer, a row per index (colour selectivity with its chance
level, orientation selectivity, preferred frequency, contrast c50); in each panel a thin line per
run coloured by condition, and the condition's mean ± sd over seeds (epoch 0: the random init).
The findings rows (`findings.tuning_findings`) compare the conditions at the last epoch.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .figures import lines_by_condition, plt, save

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
    layers = [layer for layer in study.layers if layer in set(frame["layer"])]
    rows = [metric for metric in ROWS if (frame["metric"] == metric).any()]
    fig, axes = plt.subplots(len(rows), len(layers), figsize=(3.2 * len(layers), 2.4 * len(rows)), squeeze=False,
                             sharex=True)
    for r, metric in enumerate(rows):
        for c, layer in enumerate(layers):
            ax = axes[r][c]
            lines_by_condition(ax, frame[(frame["metric"] == metric) & (frame["layer"] == layer)],
                               ROWS[metric] if c == 0 else "")
            if metric == "tuning_colour_selectivity":
                chance = frame[(frame["metric"] == "tuning_colour_selectivity_chance") & (frame["layer"] == layer)]
                line = chance.groupby("epoch")["value"].mean()
                ax.plot(line.index, line.values, color="grey", ls=":", lw=1, label="chance (hues shuffled)")
            if r == 0:
                ax.set_title(layer)
            if r < len(rows) - 1:
                ax.set_xlabel("")
    axes[0][0].legend(fontsize=7)
    height = fig.get_figheight()
    fig.subplots_adjust(wspace=0.3, hspace=0.25, top=1 - 0.55 / height)
    fig.suptitle("What the units are tuned to, over training", y=1 - 0.12 / height)
    return save(fig, out / "tuning_over_training")
