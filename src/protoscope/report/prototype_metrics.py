"""Prototype metrics over training (the seed's Figures 3, 6, 7 and 8).

One figure per metric — diversity, rate of change, re-evolution consistency — with a
column per layer and a row per (space, distance); in each panel a thin line per run
(averaged over repeats) coloured by condition, and the condition's mean ± sd over runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .figures import lines_by_condition, plt, save

_PATTERN = re.compile(r"^(diversity|change|consistency)_(mse|cosine)$")
_TITLES = {
    "diversity": ("Prototype diversity: mean distance between units", "mean distance between units"),
    "change": ("Rate of change: distance of each unit's prototype to the next studied epoch", "distance to next epoch"),
    "consistency": ("Re-evolution consistency: distance between repeats (lower = more consistent)",
                    "distance between repeats"),
}


def prototype_metric_frame(metrics: pd.DataFrame) -> pd.DataFrame:
    """The analyze rows as columns run, condition, epoch, layer, space, kind, distance, value (mean over repeats)."""
    parts = metrics["metric"].astype(str).str.extract(_PATTERN)
    rows = metrics.assign(kind=parts[0], distance=parts[1]).dropna(subset=["kind", "space"])
    keys = ["run", "condition", "epoch", "layer", "space", "kind", "distance"]
    return rows.groupby(keys, observed=True)["value"].mean().reset_index()


def prototype_metric_figures(metrics: pd.DataFrame, out: Path, layers: list[str] | None = None) -> list[Path]:
    """`prototype_{diversity,change,consistency}.png` (+ PDF) from the metrics table."""
    frame = prototype_metric_frame(metrics)
    if frame.empty:
        return []
    present = list(dict.fromkeys(frame["layer"]))
    order = [layer for layer in (layers or []) if layer in present]
    layers = order + [layer for layer in present if layer not in order]
    paths: list[Path] = []
    for kind, (title, ylabel) in _TITLES.items():
        sub = frame[frame["kind"] == kind]
        if sub.empty:
            continue
        combos = sorted(dict.fromkeys(zip(sub["space"], sub["distance"])),  # pixel space first, mse before cosine
                        key=lambda c: (c[0] != "pixel", c[0], c[1] != "mse"))
        fig, axes = plt.subplots(len(combos), len(layers), figsize=(3.3 * len(layers), 2.7 * len(combos)),
                                 squeeze=False, sharex=True)
        for row, (space, distance) in enumerate(combos):
            for col, layer in enumerate(layers):
                ax = axes[row][col]
                panel = sub[(sub["space"] == space) & (sub["distance"] == distance) & (sub["layer"] == layer)]
                if panel.empty:
                    ax.set_axis_off()
                    continue
                lines_by_condition(ax, panel, f"{space} · {distance}\n{ylabel}" if col == 0 else "")
                if row == 0:
                    ax.set_title(layer)
                if row < len(combos) - 1:
                    ax.set_xlabel("")
        axes[0][0].legend(fontsize=7)
        height = fig.get_figheight()  # not tight_layout: it costs more than the drawing here
        fig.subplots_adjust(wspace=0.3, hspace=0.2, top=1 - 0.55 / height)
        fig.suptitle(title, y=1 - 0.12 / height)
        paths += save(fig, out / f"prototype_{kind}")
    return paths
