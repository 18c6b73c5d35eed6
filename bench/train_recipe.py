"""How the demo's training recipe drives its probe finding: clrjit and keepclr trained longer, probed
at every epoch.

    python bench/train_recipe.py --epochs 24 --out /tmp/recipe > bench/results/train_recipe.txt
    python bench/train_recipe.py --quick --epochs 1 --conditions clrjit --out DIR   # a smoke run

A built-in study (`--study demo`: shapes; `--study digits`; SimCLR as in its study file) with
one run (`--seed`, default 0) of each of `--conditions` only, `--epochs` epochs and any `--set key=value` overrides of
`defaults` (e.g. `--set optimizer.lr=0.3`); train and probe stages only, and rsa with `--rsa`. Prints the logistic-regression probe's test
accuracy per epoch and its gain over the initialization — the demo's first finding needs clrjit
≥ +0.10 and keepclr ≤ 0 — and the seconds each run trained.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from pathlib import Path

import torch
import yaml


def _set(tree: dict, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    for key in path:
        tree = tree.setdefault(key, {})
    tree[last] = value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--out", type=Path, default=Path("/tmp/recipe"))
    parser.add_argument("--study", default="demo", help="a built-in study: demo or digits")
    parser.add_argument("--conditions", default="clrjit,keepclr", help="comma-separated, one run each")
    parser.add_argument("--seed", type=int, default=0, help="the runs' seed")
    parser.add_argument("--rsa", action="store_true", help="also the rsa stage: deepest-layer separation per epoch")
    parser.add_argument("--rsa-images", type=int, default=None, help="the rsa probe set's size (study's default)")
    parser.add_argument("--set", action="append", default=[], help="defaults.KEY=VALUE (YAML value)")
    parser.add_argument("--quick", action="store_true",
                        help="the sizes of `protoscope demo --quick` (data, batch, probe), --epochs still applies")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    from protoscope import stages
    from protoscope.store import MetricsTable
    from protoscope.demo import QUICK
    from protoscope.study import builtin_study, load_study

    defaults = dict(copy.deepcopy(QUICK["defaults"]) if args.quick else {}, epochs=args.epochs)
    for item in args.set:
        key, value = item.split("=", 1)
        _set(defaults, key, yaml.safe_load(value))
    overrides = {"store": str(args.out.resolve()), "defaults": defaults,
                 "runs": [{"condition": args.conditions.split(","), "seed": args.seed}]}
    if args.quick:
        overrides.update(probe=QUICK["probe"], rsa=QUICK["rsa"], workers=QUICK["workers"])
    if args.rsa_images:
        overrides["rsa"] = {"images": args.rsa_images}
    study = load_study(builtin_study(args.study), overrides)
    started = time.perf_counter()
    stages.train(study)
    trained = time.perf_counter() - started
    stages.probe(study)
    metrics = MetricsTable(study.store).read("probe")
    logreg = metrics[metrics["metric"] == "probe_logreg_test"].pivot_table(index="epoch", columns="run", values="value")
    print(f"recipe: {args.study} defaults + {defaults}; train {trained:.0f} s for {len(study.runs)} run(s) "
          f"on {torch.get_num_threads()} thread(s)")
    print("logistic probe test accuracy, and gain over epoch 0")
    gain = logreg - logreg.iloc[0]
    print(logreg.round(3).join(gain.round(3), rsuffix=" gain").to_string())
    print(f"train seconds per run: {trained / len(study.runs):.0f}")
    if args.rsa:
        _print_rsa(study)
    return 0


def _print_rsa(study) -> None:
    """The rsa stage's separation and its chance level per epoch, and the demo's RSA findings."""
    import pandas as pd

    from protoscope import stages
    from protoscope.report.findings import rsa_findings
    from protoscope.store import MetricsTable

    stages.rsa(study)
    rsa = MetricsTable(study.store).read("rsa")
    deepest = rsa[rsa["layer"] == study.layers[-1]]
    table = deepest[deepest["metric"].isin(["rsa_separation", "rsa_separation_chance"])
                    & deepest["space"].isin(["mean", "p99"])]
    print(f"RSA category separation (between − within) in {study.layers[-1]}, and its chance level (p99 of shuffles)")
    print(table.pivot_table(index="epoch", columns=["run", "metric"], values="value").round(4).to_string())
    print(pd.DataFrame(rsa_findings(rsa, study.layers)).to_string(index=False))


if __name__ == "__main__":
    sys.exit(main())
