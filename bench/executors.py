"""The quick demo under every executor, side by side: wall time, and whether the stores agree.

    python bench/executors.py --out /tmp/executors > bench/results/executors.txt
    python bench/executors.py --out /tmp/executors --dry-run   # the four commands, without running them

Runs `protoscope demo --quick` as a fresh process into an empty store, four times: `--executor
local` with torch's default thread count, `--executor local` on one thread (OMP_NUM_THREADS=1),
`--executor processes` (one one-thread process per core; the demo's default) and `--executor ray`
(a local Ray cluster with every core of this machine, started by the command and counted in its
time; Ray gives each one-CPU task one thread). Then it compares the one-thread local store with the
processes and Ray stores result by result (`protoscope.store.compare`): the same arithmetic, jobs
run in other processes and another order, so they must agree bit for bit.
(The thread count itself changes the order of float sums, so the default-thread store differs in
the last bits; it is timed, not compared.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


RUNS = {  # name: (store folder, executor, environment)
    "local": ("local", "local", {}),
    "local, 1 thread": ("local1", "local", {"OMP_NUM_THREADS": "1"}),
    "processes": ("processes", "processes", {}),
    "ray": ("ray", "ray", {}),
}


def demo_command(out: Path, executor: str) -> list[str]:
    return [sys.executable, "-m", "protoscope.cli", "demo", "--quick", "--out", str(out), "--executor", executor]


def timed_demo(out: Path, executor: str, env: dict | None = None) -> float:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    proc = subprocess.run(demo_command(out, executor), capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{executor}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dry-run", action="store_true", help="check the imports and print the commands; run nothing")
    args = parser.parse_args(argv)
    from protoscope.store.compare import differences, leftovers

    if args.dry_run:
        import importlib.util

        missing = [name for name in ("protoscope.cli", "ray") if importlib.util.find_spec(name) is None]
        if missing:
            sys.exit(f"not installed: {', '.join(missing)}")
        for name, (folder, executor, env) in RUNS.items():
            print(f"{name}: {' '.join(f'{k}={v}' for k, v in env.items())}{' ' if env else ''}"
                  f"{' '.join(demo_command(args.out / folder, executor))}")
        return 0
    print(f"machine: {os.cpu_count()} CPUs; protoscope demo --quick, each executor in a fresh process")
    times = {name: timed_demo(args.out / folder, executor, env) for name, (folder, executor, env) in RUNS.items()}
    for name, seconds in times.items():
        print(f"{name:16s} {seconds:6.1f} s")
    found = [f"ray: {line}" for line in differences(args.out / "local1", args.out / "ray")]
    found += [f"processes: {line}" for line in differences(args.out / "local1", args.out / "processes")]
    left = leftovers(args.out / "ray") + leftovers(args.out / "local1") + leftovers(args.out / "processes")
    for line in found[:20]:
        print("  " + line)
    print(f"ray_over_local={times['ray'] / times['local']:.2f} processes_over_local="
          f"{times['processes'] / times['local']:.2f} differences_vs_local1={len(found)} leftovers={len(left)}")
    return 0 if not found and not left else 1


if __name__ == "__main__":
    sys.exit(main())
