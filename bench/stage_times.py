"""Seconds per analysis stage of a study, measured on a fresh copy of its checkpoints.

    python bench/stage_times.py                      # the demo, from out/demo (run `make demo` first)
    python bench/stage_times.py --study my.yaml --store out/my --stages analyze,rsa
    python bench/stage_times.py --quick --store STORE --stages analyze   # a `protoscope demo --quick` store

The copy holds the run folders (and, unless `evolve` is timed, the prototypes), so each
stage computes everything it stores; the original store is never touched.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from protoscope import stages
from protoscope.demo import demo_study
from protoscope.study import load_study


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", default=None, help="study file (default: the built-in demo)")
    p.add_argument("--store", type=Path, default=Path("out/demo"), help="store holding the trained runs")
    p.add_argument("--stages", default="evolve,analyze,rsa,align,report")
    p.add_argument("--quick", action="store_true", help="without --study: the store is `protoscope demo --quick`'s")
    args = p.parse_args(argv)
    names = [s for s in args.stages.split(",") if s]
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "store"
        shutil.copytree(args.store / "runs", copy / "runs")
        if "evolve" not in names and (args.store / "arrays.zarr").is_dir():
            shutil.copytree(args.store / "arrays.zarr", copy / "arrays.zarr")
        if (args.store / "metrics").is_dir():  # earlier stages' rows (probe, evolve) stay; timed ones go
            shutil.copytree(args.store / "metrics", copy / "metrics")
            for name in names:
                shutil.rmtree(copy / "metrics" / name, ignore_errors=True)
        if args.study is None:
            study = demo_study(copy, quick=args.quick)
        else:
            study = load_study(args.study, {"store": str(copy)})
        for name in names:
            start = time.perf_counter()
            getattr(stages, name)(study)
            print(f"{name:8s} {time.perf_counter() - start:7.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
