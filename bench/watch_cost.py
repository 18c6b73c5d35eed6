"""What watching costs per epoch: from a checkpoint written to its results on the page (issue #30).

On a fresh copy of a trained study's run folders, the live jobs of epochs 0 … k are done as
`protoscope watch` does them (untimed), then one new checkpoint arrives: epoch k + 1 of one run.
Timed, as the watch runs them: each live stage's jobs for that checkpoint (linear probes,
prototypes with their receptive fields, the stimulus set's activations), the provisional refresh of
what reads the whole series, stage by stage (`stages/provisional.py`), the site drawn from it, and
the live status. Their sum is the latency a person watching waits after a checkpoint lands; beside
it, the median seconds of one training epoch of that run (the train stage's `seconds` rows) and the
share. The refresh keeps what the arriving epoch leaves as it was (`stages/provisional_reuse.py`);
the same refresh afresh, and a fresh one at an early epoch, are timed beside it.

    python bench/watch_cost.py                            # the demo, from out/demo (`make demo` first)
    python bench/watch_cost.py --quick --store STORE      # a `protoscope demo --quick` store

The jobs run in this process, at torch's threads; `protoscope watch --executor processes` sends
the live ones to a pool instead.
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
    p.add_argument("--run", default="clrjit-s0", help="the run whose next checkpoint arrives")
    p.add_argument("--epoch", type=int, default=None, help="the epoch that arrives; default: the middle one")
    p.add_argument("--early", type=int, default=2, help="the earlier epoch the refresh is also timed at")
    args = p.parse_args(argv)
    from protoscope.stages import provisional

    train = MetricsTable(args.store).read("train")
    epoch_seconds = train[(train["metric"] == "seconds") & (train["run"] == args.run)]["value"].median()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "store"
        shutil.copytree(args.store / "runs", copy / "runs")
        shutil.copytree(args.store / "metrics" / "train", copy / "metrics" / "train")
        study = demo_study(copy, quick=args.quick)
        last = max(run.epochs for run in study.runs)
        epoch = args.epoch if args.epoch is not None else last // 2 + 1
        print(f"{study.name}: {len(study.runs)} runs of {last} epochs; epoch {epoch} of {args.run} arrives; "
              f"one training epoch of it: {epoch_seconds:.1f} s (median)")
        early = {}
        for k in range(epoch):  # the rounds before: untimed, but for one refresh at an early epoch
            _live(study, _states(study, {run.name: k for run in study.runs}), k)
            if k in (args.early, epoch - 1):  # and the refresh the arriving epoch finds
                seconds = _refresh(study, _states(study, {run.name: k for run in study.runs}), provisional)
                early = seconds if k == args.early else early
        upto = {run.name: epoch - 1 for run in study.runs} | {args.run: epoch}
        states = _states(study, upto)
        times = _live(study, states, epoch, args.run)
        later = _refresh(study, states, provisional)
        times |= {f"provisional {name}": seconds for name, seconds in later.items() if name != "site"}
        times["site"] = later["site"]
        times["live status"] = _live_status(study, states, provisional)
        shutil.rmtree(provisional.folder(study))  # the same refresh afresh, nothing kept: what reuse saves
        afresh = _refresh(study, states, provisional)
    _table(times, early, args.early, epoch, epoch_seconds)
    print(f"the same refresh afresh (nothing kept): {sum(v for k, v in afresh.items() if k != 'site'):.1f} s")
    return 0


def _states(study, upto: dict[str, int]) -> dict:
    from protoscope.stages.watch import RunState

    return {run.name: RunState(tuple(range(run.epochs + 1)), frozenset(range(upto[run.name] + 1)), False, time.time())
            for run in study.runs}


def _live(study, states: dict, epoch: int, run: str | None = None) -> dict[str, float]:
    """The live stages' jobs for `epoch` (of `run`, or of every run), as a watch round runs them."""
    from importlib import import_module

    from protoscope.stages import execute
    from protoscope.stages.base import watching
    from protoscope.stages.watch import LIVE, OPTIONAL

    times = {}
    with watching():
        for verb, (module, at) in LIVE.items():
            if verb in OPTIONAL and getattr(study, verb) is None:
                continue

            def wanted(job, at=at) -> bool:
                return job.key[at] == epoch and (run is None or job.key[0] == run)

            start = time.perf_counter()
            execute(import_module(module).STAGE, study, None, [run] if run else None, only=wanted)
            times[verb] = time.perf_counter() - start
    return times


def _refresh(study, states: dict, provisional) -> dict[str, float]:
    """The provisional refresh and the site, each stage's seconds."""
    view = provisional.refresh(study, states)
    seconds = dict(provisional.read(study)["stage_seconds"]) if view is not None else {}
    start = time.perf_counter()
    provisional.draw(study, view)
    seconds["site"] = time.perf_counter() - start
    return seconds


def _live_status(study, states: dict, provisional) -> float:
    from protoscope.report.site.live import write_live

    start = time.perf_counter()
    write_live(study, states, provisional.read(study))
    return time.perf_counter() - start


def _table(times: dict, early: dict, early_epoch: int, epoch: int, epoch_seconds: float) -> None:
    print(f"stage | seconds | share of a training epoch | seconds afresh at epoch {early_epoch}")
    for name, seconds in times.items():
        before = early.get(name.removeprefix("provisional "), None)
        print(f"{name} | {seconds:.1f} | {100 * seconds / epoch_seconds:.0f} % | "
              + ("" if before is None else f"{before:.1f}"))
    total = sum(times.values())
    live = sum(v for k, v in times.items() if not k.startswith("provisional"))
    # `watch` draws the site after the live jobs, then refreshes and draws it again
    print(f"checkpoint to page, its own results: {live:.1f} s, {100 * live / epoch_seconds:.0f} % of a training epoch")
    print(f"checkpoint to page: {total + times['site']:.1f} s, {100 * (total + times['site']) / epoch_seconds:.0f} % "
          f"of a training epoch, with the provisional results (a refresh of {total - live:.1f} s)")
    refresh_early = sum(v for k, v in early.items() if k != "site")
    print(f"refresh at epoch {early_epoch}: {refresh_early:.1f} s; at epoch {epoch}: {total - live:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
