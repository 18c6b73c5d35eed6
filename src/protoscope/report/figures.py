"""Figures over training: one line per run, coloured by condition, mean ± sd band.

Epoch 0 (the initialization) is always the first point, as in the seed's
figures, so a reader sees what training added to random features.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

CONDITION_COLOURS = {"clrjit": "#1f77b4", "keepclr": "#d62728"}


def _colour(condition: str, index: int) -> str:
    return CONDITION_COLOURS.get(condition, f"C{index + 2}")


def save(fig, path: Path) -> list[Path]:
    """PNG for looking, PDF for papers. `path` is the name without its suffix: a layer's dots are kept
    (`prototypes_features.3` and `prototypes_features.8` are two figures, not one `prototypes_features`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.with_suffix("") if path.suffix in (".png", ".pdf") else path
    out = [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")]
    for p in out:
        fig.savefig(p, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return out


def lines_by_condition(ax, frame: pd.DataFrame, ylabel: str) -> None:
    """Thin line per run, thick mean line and ±sd band per condition."""
    for index, (condition, group) in enumerate(frame.groupby("condition", sort=True)):
        colour = _colour(condition, index)
        for _, run in group.groupby("run"):
            run = run.sort_values("epoch")
            ax.plot(run["epoch"], run["value"], color=colour, alpha=0.35, lw=0.8)
        stats = group.groupby("epoch")["value"].agg(["mean", "std", "count"]).reset_index()
        n_runs = group["run"].nunique()
        ax.plot(stats["epoch"], stats["mean"], color=colour, lw=2, label=f"{condition} (n={n_runs})")
        if n_runs > 1:
            sd = stats["std"].fillna(0)
            ax.fill_between(stats["epoch"], stats["mean"] - sd, stats["mean"] + sd, color=colour, alpha=0.15)
    ax.set_xlabel("epoch (0 = initialization)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def metric_grid(frame: pd.DataFrame, layers: list[str], rows: dict[str, str], title: str, path: Path,
                decorate=None) -> list[Path]:
    """A column per layer, a row per metric of `rows` ({metric: label}): a thin line per run and each
    condition's mean ± sd; `decorate(ax, metric, layer, row)` adds what one figure adds. Panels
    without a value are left blank."""
    layers = [layer for layer in layers if layer in set(frame["layer"])]
    metrics = [metric for metric in rows if (frame["metric"] == metric).any()]
    fig, axes = plt.subplots(len(metrics), len(layers), figsize=(3.2 * len(layers), 2.4 * len(metrics)),
                             squeeze=False, sharex=True)
    for r, metric in enumerate(metrics):
        for c, layer in enumerate(layers):
            panel = frame[(frame["metric"] == metric) & (frame["layer"] == layer)]
            ax = axes[r][c]
            if panel.dropna(subset=["value"]).empty:
                ax.set_axis_off()
                continue
            lines_by_condition(ax, panel, rows[metric] if c == 0 else "")
            if decorate is not None:
                decorate(ax, metric, layer, r)
            if r == 0:
                ax.set_title(layer)
            if r < len(metrics) - 1:
                ax.set_xlabel("")
    axes[0][0].legend(fontsize=7)
    height = fig.get_figheight()
    fig.subplots_adjust(wspace=0.3, hspace=0.25, top=1 - 0.55 / height)
    fig.suptitle(title, y=1 - 0.12 / height)
    return save(fig, path)


def probe_accuracy(metrics: pd.DataFrame, path: Path) -> list[Path]:
    """Test accuracy of every linear probe over epochs, one panel per classifier."""
    test = metrics[metrics["metric"].str.startswith("probe_") & metrics["metric"].str.endswith("_test")]
    chance = metrics[metrics["metric"] == "probe_chance"]["value"]
    classifiers = sorted(test["metric"].unique())
    fig, axes = plt.subplots(1, len(classifiers), figsize=(4.2 * len(classifiers), 3.4), squeeze=False, sharey=True)
    for ax, metric in zip(axes[0], classifiers):
        lines_by_condition(ax, test[test["metric"] == metric], "test accuracy")
        if len(chance):
            ax.axhline(chance.mean(), color="grey", ls="--", lw=1, label="chance")
        ax.set_title(metric.removeprefix("probe_").removesuffix("_test"))
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Linear probe accuracy over training")
    return save(fig, path)


def training_loss(metrics: pd.DataFrame, path: Path) -> list[Path]:
    loss = metrics[metrics["metric"] == "simclr_loss"]
    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    lines_by_condition(ax, loss, "NT-Xent loss (epoch mean)")
    ax.legend(fontsize=8)
    ax.set_title("SimCLR training loss")
    return save(fig, path)


def effective_dimensionality(metrics: pd.DataFrame, path: Path, layers: list[str]) -> list[Path]:
    """Participation ratio and RankMe of each layer's stimulus-set activations over training, by condition."""
    dims = metrics[metrics["metric"].isin(["dim_participation_ratio", "dim_rankme"])]
    layers = [layer for layer in layers if layer in set(dims["layer"])]
    fig, axes = plt.subplots(2, len(layers), figsize=(3.6 * len(layers), 6.4), squeeze=False)
    for k, layer in enumerate(layers):
        for row, (metric, label) in enumerate([("dim_participation_ratio", "participation ratio"),
                                               ("dim_rankme", "RankMe")]):
            part = dims[(dims["layer"] == layer) & (dims["metric"] == metric)]
            lines_by_condition(axes[row, k], part, label)
        axes[0, k].set_title(layer)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Effective dimensionality of the stimulus-set activations over training")
    return save(fig, path)


def width_study(metrics: pd.DataFrame, path: Path) -> list[Path]:
    """The seed's Figure 4: original- and new-task accuracy against width, mean ± sd over seeds, per
    family; the new task's linear classifier on raw inputs as the baseline."""
    width = metrics[metrics["metric"].str.startswith("width_")]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, metric, title in ((axes[0], "width_original_accuracy", "original task (trained on)"),
                              (axes[1], "width_new_accuracy", "new task (linear read-out of frozen features)")):
        part = width[(width["metric"] == metric) & (width["layer"] != "raw")].copy()
        part["width"] = part["space"].astype(int)
        for index, (family, group) in enumerate(part.groupby("layer", sort=True)):
            stats = group.groupby("width")["value"].agg(["mean", "std"]).reset_index().fillna(0)
            ax.errorbar(stats["width"], stats["mean"], yerr=stats["std"], marker="o", capsize=3,
                        color=f"C{index}", label=f"{family} (n={group['seed'].nunique()} seeds)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("width (penultimate units)")
        ax.set_ylabel("test accuracy")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    raw = width[(width["layer"] == "raw") & (width["metric"] == "width_new_accuracy")]["value"]
    if len(raw):
        axes[1].axhline(raw.mean(), color="grey", ls="--", label="linear on raw inputs")
    axes[1].legend(fontsize=8)
    fig.suptitle("Width study: wider nets keep more of what the original task did not ask for")
    return save(fig, path)
