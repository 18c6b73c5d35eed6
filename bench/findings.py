"""The seed's findings on a built-in study's store, each with its margin (> 0: it holds).

    .venv/bin/protoscope demo --out out/demo && python bench/findings.py --store out/demo > bench/results/findings_demo.txt
    .venv/bin/protoscope demo --study digits --out out/digits && \
        python bench/findings.py --study digits --store out/digits > bench/results/findings_digits.txt

The same table the demo prints last (`protoscope.report.findings`), plus the probe table, as text.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", default="demo")
    parser.add_argument("--store", type=Path, required=True)
    args = parser.parse_args(argv)
    from protoscope import stages
    from protoscope.demo import demo_study
    from protoscope.report.findings import findings
    from protoscope.store import MetricsTable

    study = demo_study(args.store, name=args.study)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_colwidth", 80)
    print(f"study {args.study}, store {args.store}")
    print(stages.final_table(study).round(3).to_string())
    print()
    metrics = MetricsTable(study.store).read()
    print(findings(metrics, list(study.layers)).to_string(index=False))
    print()
    print(_per_run(metrics, list(study.layers)).to_string())
    print()
    print(_per_pair(metrics).to_string())
    return 0


def _per_pair(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per aligned pair and layer at the aligned epoch: mean bipartite- and semi-matched correlation, and
    linear CKA — what the alignment findings average over pairs."""
    names = {"align_corr_bipartite_mean": "bipartite", "align_corr_semi_mean": "semi", "cka": "cka"}
    pairs = metrics[metrics["run"].str.contains("~", na=False) & metrics["metric"].isin(list(names))]
    last = pairs[pairs["epoch"] == pairs.groupby("run")["epoch"].transform("max")]
    last = last[~last["layer"].str.contains("~", na=False)]  # CKA is also stored across layers
    wide = last.pivot_table(index=["run", "layer"], columns="metric", values="value").rename(columns=names)
    return wide.dropna(subset=["bipartite"]).round(3).rename_axis(index=["aligned pair", "layer"], columns=None)


def _per_run(metrics: pd.DataFrame, layers: list[str]) -> pd.DataFrame:
    """What the findings average over runs, per run: the deepest layer's RSA separation and its chance
    level at the last epoch, and each layer's settling epoch (RDM r >= 0.9 with its last, from then on)."""
    from protoscope.report.findings import settling_epoch

    rows = {}
    for run, group in metrics[metrics["metric"].str.startswith("rsa_", na=False)].groupby("run"):
        last = group[group["epoch"] == group["epoch"].max()]
        deep = last[last["layer"] == layers[-1]]
        row = {"separation": deep[(deep["metric"] == "rsa_separation") & (deep["space"] == "mean")]["value"].mean(),
               "chance (p99)": deep[deep["metric"] == "rsa_separation_chance"]["value"].mean()}
        for layer in layers:
            settle = group[(group["metric"] == "rsa_vs_final_pearson") & (group["layer"] == layer)]
            row[f"{layer} settles"] = settling_epoch(settle)
        rows[run] = row
    return pd.DataFrame(rows).T.round(4).rename_axis(f"per run ({layers[-1]}; last epoch)")


if __name__ == "__main__":
    sys.exit(main())
