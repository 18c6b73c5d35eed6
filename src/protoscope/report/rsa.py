"""RSA figures: how a layer's representational geometry develops over training.

- ``rsa_consecutive`` (the seed's Figure 1): similarity of the RDMs of consecutive epochs, one
  line per layer (dark = early, light = deep), mean ± sd over the seeds of a condition. A curve
  that climbs to 1 is a layer that has stopped changing.
- ``rsa_vs_final``: each epoch's RDM against the last one: how close the geometry already is.
- ``rsa_categories`` (Figure 2): within- (solid) vs between-category (dashed) mean dissimilarity
  per category over epochs, shaded sd over seeds. Categories separate where dashed rises above solid.
- ``rsa_separation``: between − within per layer (mean over categories): when categories pull apart.
- ``rsa_rdms_<run>``: RDMs at chosen epochs, images grouped by category, colours are percentiles.
- ``rsa_mds``: every epoch's RDM as a point (MDS of 1 − RDM correlation), one path per run.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .figures import _colour, save  # noqa: E402


def _layer_order(frame: pd.DataFrame, layers: list[str] | None) -> list[str]:
    present = list(dict.fromkeys(frame["layer"].dropna()))
    ordered = [layer for layer in (layers or []) if layer in present]
    return ordered + sorted(layer for layer in present if layer not in ordered)


def _layer_colours(layers: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("viridis")
    return {layer: cmap(0.85 * i / max(1, len(layers) - 1)) for i, layer in enumerate(layers)}


def _mean_band(ax, frame: pd.DataFrame, colour, label: str | None, ls: str = "-") -> None:
    """Mean over runs (seeds) per epoch, with a ±sd band where there are several."""
    stats = frame.groupby("epoch")["value"].agg(["mean", "std", "count"]).reset_index().sort_values("epoch")
    ax.plot(stats["epoch"], stats["mean"], color=colour, lw=1.8, ls=ls, label=label, marker=".", ms=4)
    if frame["run"].nunique() > 1:
        sd = stats["std"].fillna(0)
        ax.fill_between(stats["epoch"], stats["mean"] - sd, stats["mean"] + sd, color=colour, alpha=0.15, lw=0)


def _n_runs(frame: pd.DataFrame) -> str:
    return f"n={frame['run'].nunique()}"


_CURVES = {  # kind -> (y label, title)
    "consecutive": ("RDM {method} r (e−1 vs e)", "Representational change between consecutive epochs (1 = no change)"),
    "vs_final": ("RDM {method} r (vs final)", "Similarity of each epoch's RDM to the final one"),
    "separation": ("between − within ({distance})", "Category separation: between- minus within-category dissimilarity"),
}


def trajectory(metrics: pd.DataFrame, path: Path, kind: str, layers: list[str] | None = None,
               distance: str = "dissimilarity") -> list[Path]:
    """One line per layer over epochs; rows = comparison methods, columns = conditions.

    `kind`: "consecutive" (Figure 1), "vs_final", or "separation" (mean over categories).
    """
    rows = metrics[metrics["metric"].str.startswith(f"rsa_{kind}")]
    if kind == "separation":
        rows = rows[(rows["metric"] == "rsa_separation") & (rows["space"] == "mean")]
    if rows.empty:
        return []
    ylabel, title = _CURVES[kind]
    methods = sorted(rows["metric"].unique(), key=lambda m: (not m.endswith("_pearson"), m))
    conditions = sorted(rows["condition"].dropna().unique())
    order = _layer_order(rows, layers)
    colours = _layer_colours(order)
    fig, axes = plt.subplots(len(methods), len(conditions), figsize=(4.2 * len(conditions), 3.2 * len(methods)),
                             squeeze=False, sharex=True, sharey="row")
    for r, metric in enumerate(methods):
        method = metric.removeprefix(f"rsa_{kind}").removeprefix("_")
        for c, condition in enumerate(conditions):
            ax = axes[r][c]
            sub = rows[(rows["metric"] == metric) & (rows["condition"] == condition)]
            for layer in order:
                _mean_band(ax, sub[sub["layer"] == layer], colours[layer], layer)
            ax.set_title(f"{condition} ({_n_runs(sub)})")
            ax.set_ylabel(ylabel.format(method=method, distance=distance))
            ax.grid(alpha=0.3)
            if kind == "separation":
                ax.axhline(0, color="grey", lw=0.8)
                _chance_line(ax, metrics, condition, order[-1] if order else None)
            if r == len(methods) - 1:
                ax.set_xlabel("epoch (0 = initialization)")
    axes[0][0].legend(fontsize=8, title="layer", title_fontsize=8)
    fig.suptitle(title + "; mean ± sd over seeds")
    return save(fig, path)


def _chance_line(ax, metrics: pd.DataFrame, condition: str, layer: str | None) -> None:
    """The deepest layer's chance level: the 99th percentile of its separation with shuffled categories."""
    chance = metrics[(metrics["metric"] == "rsa_separation_chance") & (metrics["condition"] == condition)
                     & (metrics["layer"] == layer)]
    if not chance.empty:
        line = chance.groupby("epoch")["value"].mean()
        ax.plot(line.index, line.values, color="black", ls=":", lw=1, label=f"{layer}: chance (shuffled, 99th pct)")


def categories(metrics: pd.DataFrame, path: Path, layers: list[str] | None = None,
               distance: str = "dissimilarity") -> list[Path]:
    """Figure 2: within (solid) vs between (dashed) category dissimilarity; rows = conditions, columns = layers."""
    rows = metrics[metrics["metric"].isin(["rsa_within", "rsa_between"]) & (metrics["space"] != "mean")]
    if rows.empty:
        return []
    conditions = sorted(rows["condition"].dropna().unique())
    order = _layer_order(rows, layers)
    cats = list(dict.fromkeys(rows["space"]))
    fig, axes = plt.subplots(len(conditions), len(order), figsize=(3.4 * len(order), 3.0 * len(conditions)),
                             squeeze=False, sharex=True)
    for r, condition in enumerate(conditions):
        for c, layer in enumerate(order):
            ax = axes[r][c]
            sub = rows[(rows["condition"] == condition) & (rows["layer"] == layer)]
            for k, cat in enumerate(cats):
                for metric, ls in (("rsa_within", "-"), ("rsa_between", "--")):
                    part = sub[(sub["space"] == cat) & (sub["metric"] == metric)]
                    if not part.empty:
                        _mean_band(ax, part, f"C{k}", cat if metric == "rsa_within" else None, ls)
            ax.set_title(f"{condition} {layer} ({_n_runs(sub)})", fontsize=9)
            ax.grid(alpha=0.3)
            if c == 0:
                ax.set_ylabel(f"mean {distance}")
            if r == len(conditions) - 1:
                ax.set_xlabel("epoch")
    handles, labels = axes[0][0].get_legend_handles_labels()
    handles += [plt.Line2D([], [], color="k", ls="-"), plt.Line2D([], [], color="k", ls="--")]
    labels += ["within category", "between categories"]
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8,
               bbox_to_anchor=(0.5, -0.02 - 0.02 * (len(labels) > 6)))
    fig.suptitle("Within- vs between-category dissimilarity over training; mean ± sd over seeds")
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    return save(fig, path)


def snapshot_epochs(epochs: list[int], chosen: list[int] | None) -> list[int]:
    """The chosen epochs that are stored, or first, middle and last."""
    epochs = sorted(epochs)
    if chosen:
        return [e for e in chosen if e in epochs] or epochs[-1:]
    return sorted({epochs[0], epochs[len(epochs) // 2], epochs[-1]})


def rdm_snapshots(rdms, run: str, path: Path, layers: list[str], epochs: list[int] | None = None) -> list[Path]:
    """Rows = layers, columns = epochs: the RDMs of one run, patterns grouped by category (percentile colours)."""
    from scipy.spatial.distance import squareform
    from scipy.stats import rankdata

    mine = rdms.subset("run", run)
    order_layers = [layer for layer in layers if layer in set(mine.rdm_descriptors["layer"])]
    chosen = snapshot_epochs(list(set(mine.rdm_descriptors["epoch"])), epochs)
    category = np.asarray(mine.pattern_descriptors["category"]).astype(str)
    names = list(dict.fromkeys(category))
    order = np.argsort([names.index(c) for c in category], kind="stable")
    bounds = np.flatnonzero(np.diff([names.index(c) for c in category[order]])) + 0.5
    fig, axes = plt.subplots(len(order_layers), len(chosen), figsize=(2.6 * len(chosen) + 0.8, 2.5 * len(order_layers)),
                             squeeze=False)
    image = None
    for r, layer in enumerate(order_layers):
        per_layer = mine.subset("layer", layer)
        for c, epoch in enumerate(chosen):
            ax = axes[r][c]
            one = per_layer.subset("epoch", epoch)
            vector = one.get_vectors()[0]
            # percentiles of the dissimilarities: the usual RSA display, comparable across panels
            ranked = squareform((rankdata(vector) - 1) / max(1, len(vector) - 1) * 100)
            image = ax.imshow(ranked[np.ix_(order, order)], cmap="viridis", vmin=0, vmax=100, interpolation="nearest")
            for b in bounds:
                ax.axhline(b, color="w", lw=0.6)
                ax.axvline(b, color="w", lw=0.6)
            centres = [np.mean(np.flatnonzero(category[order] == n)) for n in names]
            ax.set_xticks(centres if r == len(order_layers) - 1 else [])
            ax.set_xticklabels(names if r == len(order_layers) - 1 else [], rotation=90, fontsize=7)
            ax.set_yticks(centres if c == 0 else [])
            ax.set_yticklabels(names if c == 0 else [], fontsize=7)
            if r == 0:
                ax.set_title(f"epoch {epoch}", fontsize=9)
            if c == 0:
                ax.set_ylabel(layer)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label="dissimilarity percentile")
    fig.suptitle(f"RDMs of {run} ({mine.dissimilarity_measure})")
    return save(fig, path)


def mds(rdms, path: Path, layers: list[str], conditions: dict[str, str], method: str = "pearson") -> list[Path]:
    """One panel per layer: every (run, epoch) RDM as a point, each run's epochs joined in order."""
    from ..analyze.rsa import trajectory_embedding

    order = [layer for layer in layers if layer in set(rdms.rdm_descriptors["layer"])]
    fig, axes = plt.subplots(1, len(order), figsize=(3.6 * len(order), 3.6), squeeze=False)
    cond_index = {c: i for i, c in enumerate(sorted(set(conditions.values())))}
    markers = "osD^v<>P*X"
    for ax, layer in zip(axes[0], order):
        sub = rdms.subset("layer", layer)
        xy = trajectory_embedding(sub, method)
        ax.set_title(layer)
        ax.set_xticks([])
        ax.set_yticks([])
        if xy is None:  # left out, with a note, rather than no report at all
            ax.text(0.5, 0.5, "no embedding:\nan RDM is constant", ha="center", va="center", fontsize=8,
                    transform=ax.transAxes)
            continue
        runs = np.asarray(sub.rdm_descriptors["run"])
        epochs = np.asarray(sub.rdm_descriptors["epoch"])
        for k, run in enumerate(sorted(set(runs))):
            pick = np.flatnonzero(runs == run)
            pick = pick[np.argsort(epochs[pick])]
            condition = conditions.get(run, run)
            colour = _colour(condition, cond_index.get(condition, k))
            ax.plot(xy[pick, 0], xy[pick, 1], color=colour, lw=1, alpha=0.8, marker=markers[k % len(markers)],
                    ms=3.5, label=run)
            for i in (pick[0], pick[-1]):
                ax.annotate(str(epochs[i]), xy[i], fontsize=7, color=colour, xytext=(3, 3), textcoords="offset points")
        ax.set_aspect("equal", adjustable="datalim")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"RDM trajectories (MDS of 1 − RDM {method} r; numbers: first and last epoch)")
    fig.tight_layout()
    return save(fig, path)


def rsa_figures(study, metrics: pd.DataFrame, out: Path) -> list[Path]:
    """Every RSA figure for what is stored."""
    from ..store.rdms import load_rdms

    spec = study.rsa
    layers = spec.layers or study.layers
    rsa = metrics[metrics["metric"].str.startswith("rsa_")]
    paths = trajectory(rsa, out / "rsa_consecutive", "consecutive", layers)
    paths += trajectory(rsa, out / "rsa_vs_final", "vs_final", layers)
    paths += categories(rsa, out / "rsa_categories", layers, f"{spec.distance} distance")
    paths += trajectory(rsa, out / "rsa_separation", "separation", layers, spec.distance)
    if metrics["metric"].str.startswith("dim_").any():
        from .figures import effective_dimensionality

        paths += effective_dimensionality(metrics, out / "effective_dimensionality", layers)
    runs = [r.name for r in study.runs if r.name in set(rsa["run"])]
    if runs:
        rdms = load_rdms(study, runs=runs)
        for run in runs:
            paths += rdm_snapshots(rdms, run, out / f"rsa_rdms_{run}", layers, spec.snapshots)
        paths += mds(rdms, out / "rsa_mds", layers, {r.name: r.condition for r in study.runs}, spec.compare[0])
    return paths
