"""RSA category separation on the demo's checkpoints, with conv maps averaged over space (the demo's
setting) and flattened (one of the options issue #17 lists).

    python bench/rsa_features.py --store out/demo --out /tmp/rsa_flat > bench/results/rsa_features.txt
    python bench/rsa_features.py --quick --store STORE --out DIR [--images 16]   # a `protoscope demo --quick` store

Copies the demo's checkpoints to `--out`, runs the RSA stage there with `rsa.features: flatten`
(the same 320 probe shapes, correlation distance), and prints the mean between − within
dissimilarity per condition, layer and epoch for both feature kinds (> 0: the layer separates the
four shapes), then the RSA rows of the findings table for the flattened features.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import warnings
from pathlib import Path

import pandas as pd


def separation(store: Path) -> pd.DataFrame:
    from protoscope.store import MetricsTable

    metrics = MetricsTable(store).read("rsa")
    part = metrics[metrics["metric"] == "rsa_separation"]
    return part.groupby(["condition", "layer", "epoch"])["value"].mean().unstack("epoch").round(3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, default=Path("out/demo"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/rsa_flat"))
    parser.add_argument("--quick", action="store_true",
                        help="the store is `protoscope demo --quick`'s (its rsa settings)")
    parser.add_argument("--images", type=int, default=None, help="rsa.images, the probe set (default: the study's)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    from protoscope import stages
    from protoscope.report.findings import rsa_findings
    from protoscope.store import MetricsTable
    from protoscope.demo import QUICK
    from protoscope.study import builtin_study, load_study

    if not (args.out / "runs").is_dir():
        shutil.copytree(args.store / "runs", args.out / "runs")
    overrides = dict(QUICK) if args.quick else {}
    rsa = {**overrides.get("rsa", {}), "features": "flatten", **({"images": args.images} if args.images else {})}
    overrides.update(store=str(args.out.resolve()), rsa=rsa)
    study = load_study(builtin_study("demo"), overrides)
    stages.rsa(study)
    pd.set_option("display.width", 200)
    print("rsa_separation, features: mean (the demo's store)")
    print(separation(args.store).to_string())
    print("\nrsa_separation, features: flatten")
    print(separation(args.out).to_string())
    print("\n" + pd.DataFrame(rsa_findings(MetricsTable(args.out).read(), list(study.layers))).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
