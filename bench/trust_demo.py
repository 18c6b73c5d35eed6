"""Trust of a study's stored prototypes over training, as the trust stage stored them (issue #28):
which layers' prototypes become faithful, from which epoch, and clrjit against keepclr.

Prints, from the metrics table (stage `trust`): per layer and condition, the share of trustworthy
prototypes at every epoch (means over runs and repeats); then per run and layer, the first and last
epoch's mean scores (means over live units; medians for spectral distance, natural ratio and transfer).

    python bench/trust_demo.py --store out/demo > bench/results/trust_demo.txt
    python bench/trust_demo.py --quick --store STORE      # the quick demo's store
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import store_arguments, stored_study  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    store_arguments(parser)
    args = parser.parse_args(argv)
    import pandas as pd

    from protoscope.report.trust import trust_table
    from protoscope.store import MetricsTable

    study = stored_study(args)
    metrics = MetricsTable(study.store).read("trust")
    if metrics.empty:
        print(f"no trust scores in {study.store}: run `protoscope trust` first")
        return 1
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 40)
    share = metrics[metrics["metric"] == "trust_share"]
    wide = share.pivot_table(index=["layer", "condition"], columns="epoch", values="value", aggfunc="mean")
    print("Share of trustworthy prototypes (path similarity >= "
          f"{study.trust.path} and robustness >= {study.trust.robustness}), mean over runs and repeats")
    print(wide.round(2).to_string())
    print()
    print("Per run and layer, first and last epoch (means over repeats)")
    print(trust_table(metrics).round(3).to_string(index=False))
    seconds = metrics[metrics["metric"] == "trust_seconds"]["value"]
    print()
    print(f"trust stage: {len(seconds)} (run, epoch) jobs, {seconds.median():.1f} s median per job")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
