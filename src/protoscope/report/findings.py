"""The seed papers' findings, checked on a study's metrics: each with its value, its margin and
whether it goes the seed's way. The demo prints this table last; the report shows it first.

A margin is signed so that > 0 means the finding holds: e.g. for "clrjit's probe rises 10 points
above its initialization" the margin is (final − init) − 0.10. Findings whose metrics are missing
are left out, not guessed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = ["finding", "value", "margin", "holds"]


def _row(finding: str, value: str, margin: float) -> dict:
    return {"finding": finding, "value": value, "margin": round(float(margin), 4), "holds": bool(margin > 0)}


def _last(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["epoch"] == frame.groupby("run")["epoch"].transform("max")]


def probe_findings(metrics: pd.DataFrame, rise: float = 0.10) -> list[dict]:
    """clrjit ends at least `rise` above its own initialization; keepclr at or below its own."""
    part = metrics[metrics["metric"] == "probe_logreg_test"]
    gain = {}
    for condition, group in part.groupby("condition"):
        init = group[group["epoch"] == 0].groupby("run")["value"].mean()
        final = _last(group).groupby("run")["value"].mean()
        gain[condition] = float((final - init.reindex(final.index)).mean())
    rows = []
    if "clrjit" in gain:
        rows.append(_row(f"probe: clrjit final − init ≥ {rise:.2f}", f"{gain['clrjit']:+.3f}", gain["clrjit"] - rise))
    if "keepclr" in gain:
        rows.append(_row("probe: keepclr final − init ≤ 0", f"{gain['keepclr']:+.3f}", -gain["keepclr"]))
    return rows


def _last_mean(metrics: pd.DataFrame, metric: str, layer: str, space: str) -> pd.Series:
    """Per condition, the mean over runs of one of a metric's spaces at each run's last epoch."""
    part = metrics[(metrics["metric"] == metric) & (metrics["layer"] == layer) & (metrics["space"] == space)]
    return _last(part).groupby("condition")["value"].mean() if not part.empty else pd.Series(dtype=float)


def rsa_findings(metrics: pd.DataFrame, layers: list[str]) -> list[dict]:
    """Category separation in the deepest layer at the last epoch: above chance under clrjit and larger
    than under keepclr; and layers settle in order of depth (RDM reaching 0.9 correlation with its final).

    Chance is the 99th percentile of the separation with the images' categories shuffled
    (`rsa_separation_chance`); a store without it is held to > 0."""
    rows = []
    last = _last_mean(metrics, "rsa_separation", layers[-1], "mean")  # the mean over categories
    chance = _last_mean(metrics, "rsa_separation_chance", layers[-1], "p99")
    if "clrjit" in last:
        level = float(chance.get("clrjit", 0.0))
        rows.append(_row(f"RSA: {layers[-1]} separation under clrjit above chance",
                         f"{last['clrjit']:.3f} (chance ≤ {level:.3f})", last["clrjit"] - level))
    if {"clrjit", "keepclr"} <= set(last.index):
        rows.append(_row(f"RSA: {layers[-1]} separation clrjit > keepclr",
                         f"{last['clrjit']:.3f} vs {last['keepclr']:.3f}", last["clrjit"] - last["keepclr"]))
    settle = metrics[(metrics["metric"] == "rsa_vs_final_pearson") & (metrics["condition"] == "clrjit")]
    if not settle.empty:
        epochs = {layer: settling_epoch(settle[settle["layer"] == layer]) for layer in layers}
        order = [epochs[layer] for layer in layers]
        steps = np.diff(order)
        rows.append(_row("RSA: layers settle early to deep (clrjit, RDM r ≥ 0.9 with its last)",
                         " ".join(f"{layer}@{round(e, 1):g}" for layer, e in epochs.items()),
                         float(steps.min()) + 0.5 if len(steps) else 0.0))
    return rows


def settling_epoch(frame: pd.DataFrame, level: float = 0.9) -> float:
    """Mean over runs of the first epoch from which the RDM stays at or above `level` of its final."""
    firsts = []
    for _, run in frame.groupby("run"):
        run = run.sort_values("epoch")
        below = run[run["value"] < level]["epoch"]
        firsts.append(float(below.max() + 1) if len(below) else float(run["epoch"].min()))
    return float(np.mean(firsts))


def _growth(metrics: pd.DataFrame, metric: str, layer: str) -> dict[str, float]:
    """Per condition: a metric's value at the last epoch over its value at the first, minus 1."""
    part = metrics[(metrics["metric"] == metric) & (metrics["space"] == "pixel") & (metrics["layer"] == layer)]
    growth = {}
    for condition, group in part.groupby("condition"):
        first = group[group["epoch"] == group["epoch"].min()]["value"].mean()
        growth[condition] = float(_last(group)["value"].mean() / first - 1)
    return growth


def prototype_findings(metrics: pd.DataFrame, layers: list[str]) -> list[dict]:
    """Deep-layer diversity grows under clrjit and not under keepclr; the rate of change falls.

    Diversity is the mean cosine distance between a layer's masked prototypes: it asks whether
    they point different ways, whatever their contrast. The mse diversity, shown beside it, also
    scales with the prototypes' contrast, which falls from the random init's noise.
    """
    rows = []
    growth, mse = _growth(metrics, "diversity_cosine", layers[-1]), _growth(metrics, "diversity_mse", layers[-1])

    def shown(condition: str) -> str:
        return f"{growth[condition]:+.0%}" + (f" (mse {mse[condition]:+.0%})" if condition in mse else "")

    if "clrjit" in growth:
        rows.append(_row(f"prototypes: {layers[-1]} diversity grows under clrjit", shown("clrjit"), growth["clrjit"]))
    if {"clrjit", "keepclr"} <= set(growth):
        rows.append(_row(f"prototypes: {layers[-1]} diversity grows more under clrjit than keepclr",
                         f"{shown('clrjit')} vs {shown('keepclr')}", growth["clrjit"] - growth["keepclr"]))
    change = metrics[(metrics["metric"] == "change_mse") & (metrics["space"] == "pixel")]
    if not change.empty:
        by_epoch = change.groupby("epoch")["value"].mean().sort_index()
        early, late = by_epoch.iloc[: max(1, len(by_epoch) // 3)].mean(), by_epoch.iloc[-max(1, len(by_epoch) // 3):].mean()
        rows.append(_row("prototypes settle: rate of change falls (first third vs last third of epochs)",
                         f"{early:.4f} → {late:.4f}", early - late))
    return rows


def alignment_findings(metrics: pd.DataFrame) -> list[dict]:
    """Semi-matching at or above bipartite matching at every layer; which layers converge most."""
    part = metrics[metrics["metric"].isin(["align_corr_bipartite_mean", "align_corr_semi_mean"])]
    if part.empty:
        return []
    wide = part.pivot_table(index="layer", columns="metric", values="value", aggfunc="mean")
    gap = wide["align_corr_semi_mean"] - wide["align_corr_bipartite_mean"]
    ranking = wide["align_corr_bipartite_mean"].sort_values(ascending=False)
    return [_row("alignment: semi ≥ bipartite at every layer", f"min gap {gap.min():+.3f}", gap.min() + 1e-9),
            {"finding": "alignment: layers by matched correlation (seed: first and last most)",
             "value": " > ".join(f"{layer} {v:.2f}" for layer, v in ranking.items()), "margin": None, "holds": None}]


def width_findings(metrics: pd.DataFrame, flat: float = 0.05) -> list[dict]:
    """The seed's claim at equal original-task accuracy: among the widths whose original-task accuracy
    is within `flat` of the best, new-task accuracy rises from the narrowest to the widest."""
    rows = []
    width = metrics[metrics["metric"].str.startswith("width_", na=False)]
    for family, group in width[width["layer"].fillna("raw") != "raw"].groupby("layer"):
        group = group.assign(width=group["space"].astype(int))
        mean = group.groupby(["metric", "width"])["value"].mean()
        new, original = mean["width_new_accuracy"], mean["width_original_accuracy"]
        level = original[original >= original.max() - flat]
        name = f"width ({family}): new task rises with width at flat original accuracy (within {flat})"
        if len(level) < 2:
            rows.append(_row(name, f"only width {level.index[0]} is within {flat} of the best", -1.0))
            continue
        low, high = level.index.min(), level.index.max()
        rows.append(_row(name, f"w{low} {new[low]:.3f} → w{high} {new[high]:.3f} (original {level.min():.3f} … "
                               f"{level.max():.3f}; narrower nets left out: {len(original) - len(level)})",
                         new[high] - new[low]))
    return rows


def trust_findings(metrics: pd.DataFrame, layers: list[str]) -> list[dict]:
    """Not the seed's (issue #28): the deepest layer's share of trustworthy prototypes grows with
    training under clrjit, and ends higher under clrjit than under keepclr (means over runs and repeats)."""
    part = metrics[(metrics["metric"] == "trust_share") & (metrics["layer"] == layers[-1])]
    if part.empty:
        return []
    first = part[part["epoch"] == part["epoch"].min()].groupby("condition")["value"].mean()
    last = _last(part).groupby("condition")["value"].mean()
    rows = []
    if "clrjit" in last:
        rows.append(_row(f"trust: {layers[-1]} prototypes become trustworthy with training (clrjit)",
                         f"{first['clrjit']:.2f} → {last['clrjit']:.2f}", last["clrjit"] - first["clrjit"]))
    if {"clrjit", "keepclr"} <= set(last.index):
        rows.append(_row(f"trust: {layers[-1]} share trustworthy at the last epoch, clrjit > keepclr",
                         f"{last['clrjit']:.2f} vs {last['keepclr']:.2f}", last["clrjit"] - last["keepclr"]))
    return rows


def tuning_findings(metrics: pd.DataFrame, layers: list[str]) -> list[dict]:
    """The demo's question asked directly (issue #31): keepclr's deep layers (the last two studied)
    end more colour-selective than clrjit's, and clrjit's orientation selectivity (mean over the
    layers) grows from the initialization to the last epoch."""
    from .tuning import tuning_frame

    frame = tuning_frame(metrics)
    if frame.empty:
        return []
    rows = []
    colour = _last(frame[(frame["metric"] == "tuning_colour_selectivity") & frame["layer"].isin(layers[-2:])])
    by_condition = colour.groupby("condition")["value"].mean()
    if {"clrjit", "keepclr"} <= set(by_condition.index):
        rows.append(_row(f"tuning: keepclr's deep layers ({', '.join(layers[-2:])}) are more colour-selective than clrjit's",
                         f"{by_condition['keepclr']:.3f} vs {by_condition['clrjit']:.3f}",
                         by_condition["keepclr"] - by_condition["clrjit"]))
    orientation = frame[(frame["metric"] == "tuning_orientation_selectivity") & (frame["condition"] == "clrjit")]
    if not orientation.empty and orientation["epoch"].nunique() > 1:
        first = orientation[orientation["epoch"] == orientation["epoch"].min()]["value"].mean()
        last = _last(orientation)["value"].mean()
        rows.append(_row("tuning: clrjit's orientation selectivity grows (mean over layers)",
                         f"{first:.3f} → {last:.3f}", last - first))
    return rows


def findings(metrics: pd.DataFrame, layers: list[str]) -> pd.DataFrame:
    rows = (probe_findings(metrics) + rsa_findings(metrics, layers) + prototype_findings(metrics, layers)
            + trust_findings(metrics, layers) + tuning_findings(metrics, layers) + alignment_findings(metrics)
            + width_findings(metrics))
    return pd.DataFrame(rows, columns=COLUMNS)
