"""What watching costs per epoch: from a checkpoint written to its results on the page (issue #30).

For one run and one epoch of a trained study, on a fresh copy of its run folders: the seconds of
each live stage's jobs for that epoch (linear probes, prototypes with their receptive fields, as
`protoscope watch` runs them), of writing the site again, and of the live status; their sum is
the latency a person watching waits after a checkpoint lands. Beside it, the median seconds of one
training epoch of that run (the train stage's `seconds` rows in the store) and the share.

    python bench/watch_cost.py                            # the demo, from out/demo (`make demo` first)
    python bench/watch_cost.py --quick --store STORE      # a `protoscope demo --quick` store

The jobs run in this process, at torch's threads; `protoscope watch --executor processes` sends
them to a pool instead.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from protoscope.demo import demo_study
from protoscope.store import MetricsTable


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", type=Path, default=Path("out/demo"), help="a store holding the trained runs")
    p.add_argument("--quick", action="store_true", help="the store is `protoscope demo --quick`'s")
    p.add_argument("--run", default="clrjit-s0")
    p.add_argument("--epoch", type=int, default=None, help="default: the run's middle epoch")
    args = p.parse_args(argv)
    from importlib import import_module

    from protoscope.report.site.live import write_live
    from protoscope.stages import execute, report
    from protoscope.stages.base import watching
    from protoscope.stages.watch import LIVE, look

    def stage(module):
        return import_module(module).STAGE

    train = MetricsTable(args.store).read("train")
    epoch_seconds = train[(train["metric"] == "seconds") & (train["run"] == args.run)]["value"].median()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "store"
        shutil.copytree(args.store / "runs" / args.run, copy / "runs" / args.run)
        study = demo_study(copy, quick=args.quick)
        study = study.model_copy(update={"runs": [r for r in study.runs if r.name == args.run]})
        run = study.runs[0]
        epoch = args.epoch if args.epoch is not None else run.epochs // 2
        print(f"{study.name}: run {args.run}, epoch {epoch}; one training epoch of it: {epoch_seconds:.1f} s (median)")
        _first_epoch(study, execute, stage, watching, LIVE)  # arrays and settings: paid once per watch
        times = {}
        with watching():
            for verb, (module, at) in LIVE.items():
                start = time.perf_counter()
                execute(stage(module), study, only=lambda job, at=at: job.key[at] == epoch)
                times[verb] = time.perf_counter() - start
        start = time.perf_counter()
        report(study)
        times["figures and site"] = time.perf_counter() - start
        start = time.perf_counter()
        write_live(study, {run.name: look(study, run)})
        times["live status"] = time.perf_counter() - start
    total = sum(times.values())
    print("stage | seconds | share of a training epoch")
    for name, seconds in times.items():
        print(f"{name} | {seconds:.1f} | {100 * seconds / epoch_seconds:.0f} %")
    print(f"checkpoint to page: {total:.1f} s, {100 * total / epoch_seconds:.0f} % of a training epoch")
    return 0


def _first_epoch(study, execute, stage_of, watching, live) -> None:
    """Epoch 0's live jobs, untimed: a watch's first round also makes the arrays and records settings."""
    with watching():
        for module, at in live.values():
            execute(stage_of(module), study, only=lambda job, at=at: job.key[at] == 0)


if __name__ == "__main__":
    sys.exit(main())
