"""The overview's headline tables, from the metrics table: each a {"title", "columns", "rows"} dict the
page renders as it is (every cell text, never HTML)."""

from __future__ import annotations

import pandas as pd


def _table(title: str, frame: pd.DataFrame, note: str = "") -> dict:
    rows = [[_cell(v) for v in row] for row in frame.itertuples(index=False)]
    return {"title": title, "note": note, "columns": [str(c) for c in frame.columns], "rows": rows}


def _cell(value):
    if isinstance(value, float):
        return None if pd.isna(value) else round(value, 4)
    return value if isinstance(value, (int, str)) else str(value)


def probe_table(metrics: pd.DataFrame) -> dict | None:
    """Logistic-regression test accuracy at the initialization and the last epoch, mean over each condition's runs."""
    part = metrics[metrics["metric"] == "probe_logreg_test"]
    if part.empty:
        return None
    last = part.groupby("run")["epoch"].transform("max")
    init = part[part["epoch"] == 0].groupby("condition")["value"].mean()
    final = part[part["epoch"] == last].groupby("condition")["value"].mean()
    runs = part.groupby("condition")["run"].nunique()
    frame = pd.DataFrame({"condition": init.index, "runs": runs.reindex(init.index).values,
                          "init": init.values, "final": final.reindex(init.index).values})
    frame["change"] = frame["final"] - frame["init"]
    return _table("Probe accuracy (logistic regression, test)", frame, "mean over the condition's runs")


def diversity_table(metrics: pd.DataFrame) -> dict | None:
    """Pixel-space prototype diversity per layer and condition, at the first and last epoch: cosine
    (the findings' measure: whether prototypes point different ways) and mse (which also follows contrast)."""
    part = metrics[metrics["metric"].isin(["diversity_cosine", "diversity_mse"]) & (metrics["space"] == "pixel")]
    if part.empty:
        return None
    first, last = part["epoch"].min(), part["epoch"].max()
    pick = part[part["epoch"].isin([first, last])]
    wide = pick.pivot_table(index=["layer", "condition"], columns=["metric", "epoch"], values="value", aggfunc="mean")
    wide.columns = [f"{metric.removeprefix('diversity_')}, epoch {epoch}" for metric, epoch in wide.columns]
    return _table("Prototype diversity (between units' masked prototypes)", wide.reset_index(),
                  "mean over runs and repeats; higher: units differ more")


def matching_table(metrics: pd.DataFrame) -> dict | None:
    """Mean matched correlation per aligned pair and layer, bipartite and semi-matching."""
    part = metrics[metrics["metric"].isin(["align_corr_bipartite_mean", "align_corr_semi_mean"])]
    if part.empty:
        return None
    wide = part.pivot_table(index=["run", "layer", "epoch"], columns="metric", values="value", aggfunc="mean")
    wide = wide.rename(columns={"align_corr_bipartite_mean": "bipartite", "align_corr_semi_mean": "semi"})
    return _table("Matched correlation (convergent learning)", wide.reset_index().rename(columns={"run": "pair"}),
                  "mean over units of each unit's matched correlation")


def cka_table(metrics: pd.DataFrame) -> dict | None:
    """Linear CKA of the same layer between two runs."""
    part = metrics[(metrics["metric"] == "cka") & metrics["run"].str.contains("~", regex=False)
                   & ~metrics["layer"].str.contains("~", regex=False)]
    if part.empty:
        return None
    wide = part.pivot_table(index=["run", "epoch"], columns="layer", values="value", aggfunc="mean")
    return _table("CKA between runs, same layer", wide.reset_index().rename(columns={"run": "pair"}))


def trust_table(metrics: pd.DataFrame) -> dict | None:
    """Per layer and condition, the share of trustworthy prototypes at every epoch: the epoch from
    which a layer's visualizations are faithful."""
    part = metrics[metrics["metric"] == "trust_share"]
    if part.empty:
        return None
    wide = part.pivot_table(index=["layer", "condition"], columns="epoch", values="value", aggfunc="mean")
    wide.columns = [f"epoch {e}" for e in wide.columns]
    return _table("Share of trustworthy prototypes", wide.reset_index(),
                  "mean over runs and repeats of the share of live units whose prototype passes `trust:`'s thresholds "
                  "(path similarity and robustness; README: Can a prototype be trusted?)")


def findings_table(metrics: pd.DataFrame, layers: list[str]) -> dict | None:
    from ..findings import findings

    frame = findings(metrics, layers)
    if frame.empty:
        return None
    frame["holds"] = frame["holds"].map(lambda h: "—" if h is None else ("yes" if h else "no"))
    return _table("The seed papers' findings, checked on this study", frame, "margin > 0: the finding holds (report/findings.py)")


def headline_tables(metrics: pd.DataFrame, layers: list[str]) -> list[dict]:
    tables = (findings_table(metrics, layers), probe_table(metrics), trust_table(metrics), diversity_table(metrics),
              matching_table(metrics), cka_table(metrics))
    return [t for t in tables if t is not None]
