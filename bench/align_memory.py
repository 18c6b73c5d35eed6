"""Peak memory of alignment's mutual-information step, by layer width: all tables at once (before)
against blocks of units under a memory budget (`MutualInformation(memory_gb=...)`, now).

Each measurement runs in a fresh process (its high-water mark, `ru_maxrss`, is the step's peak
plus the interpreter and torch, measured alone as `baseline`). The activations are ReLU'd
Gaussians, `--samples` rows (the align stage's `mi_samples`, default 10000) of A = B = `units`.

    python bench/align_memory.py > bench/results/align_memory.txt
    python bench/align_memory.py --quick      # small widths, a smoke run
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

CHILD = """
import sys, torch
from protoscope.analyze.align.mutual_info import (MutualInformation, joint_counts, mutual_info_from_counts,
                                                  percentile_codes)
torch.set_num_threads(2)
how, units, samples = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if how != "baseline":
    gen = torch.Generator().manual_seed(0)
    a = torch.relu(torch.randn(samples, units, generator=gen))
    b = torch.relu(torch.randn(samples, units, generator=gen))
    if how == "before":  # every contingency table at once, as the step was before
        codes_a, bins = percentile_codes(a)
        codes_b, _ = percentile_codes(b)
        mi = mutual_info_from_counts(joint_counts(codes_a, codes_b, bins))
    else:
        mi = MutualInformation(memory_gb=float(how)).fit(a, b).mi_
"""


def peak_gb(how: str, units: int, samples: int) -> float:
    """The high-water mark of a fresh process that runs one configuration, in GiB."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, how, str(units), str(samples)])
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit(f"{how} at {units} units failed (status {status})")
    return usage.ru_maxrss / 2**20  # KiB on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", default="512,1024,2048", help="widths measured with blocks")
    parser.add_argument("--before", default="256,512", help="widths measured with every table at once "
                        "(its size grows with units²: 1024 units needs about 20 GB)")
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--memory-gb", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true", help="64 and 128 units, 2000 samples")
    args = parser.parse_args(argv)
    if args.quick:
        args.units, args.before, args.samples = "64,128", "64,128", 2000
    base = peak_gb("baseline", 0, args.samples)
    print(f"mutual information, {args.samples} samples, 21 bins; peak memory of a fresh process "
          f"(baseline: interpreter + torch = {base:.2f} GiB)")
    print(f"{'units':>6} {'all tables at once':>24} {'blocks (memory_gb ' + str(args.memory_gb) + ')':>26}")
    widths = sorted({int(u) for u in args.units.split(",")} | {int(u) for u in args.before.split(",") if u})
    for units in widths:
        before = f"{peak_gb('before', units, args.samples):.2f} GiB" if str(units) in args.before.split(",") else \
            f"not run (~{units * units * 21 * 21 * 8 * 2 / 2**30:.0f} GiB)"
        after = f"{peak_gb(str(args.memory_gb), units, args.samples):.2f} GiB" \
            if str(units) in args.units.split(",") else "-"
        print(f"{units:>6} {before:>24} {after:>26}")
    print("(not run: the tables alone, in float32 and float64, for one pair of layers that wide)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
