"""The seed's findings on a built-in study's store, each with its margin (> 0: it holds).

    .venv/bin/protoscope demo --out out/demo && python bench/findings.py --store out/demo > bench/results/findings_demo.txt
    .venv/bin/protoscope demo --study digits --out out/digits && \
        python bench/findings.py --study digits --store out/digits > bench/results/findings_digits.txt

The same table the demo prints last (`protoscope.report.findings`), plus the probe table, as text.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", default="demo")
    parser.add_argument("--store", type=Path, required=True)
    args = parser.parse_args()
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
    print(findings(MetricsTable(study.store).read(), list(study.layers)).to_string(index=False))


if __name__ == "__main__":
    main()
