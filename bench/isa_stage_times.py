"""The demo's stage times under this CPU's own ISA and under the AVX2 emulation, side by side.

    python bench/isa_stage_times.py > bench/results/isa_stage_times.txt
    python bench/isa_stage_times.py --logs bench/results/demo_log.txt bench/results/demo_log_avx2.txt

Without `--logs`: runs `protoscope demo --quick` twice in fresh processes, one after the other on
an otherwise quiet machine, natively and under ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2
(oneDNN's AVX2 kernels, ATen's AVX2 loops, float32 training: what a CPU without AVX-512 runs).
With `--logs NATIVE AVX2`: reads two full demos' run logs instead. A stage's time is the wall
clock from its first job's start to its last job's end (the lines `HH:MM:SS stage key started`
and `... finished in N s`); jobs run two at a time, so it is less than the sum of their seconds.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
EVENT = re.compile(r"^(\d\d:\d\d:\d\d) (\w+) \S+ (started|finished in ([\d.]+) s)")


def stage_spans(log: str) -> dict[str, float]:
    """Seconds from each stage's first start to its last finish, in the order the stages ran; the
    span from the first job to the last under "all jobs" (figures and the site come after)."""
    first, last, day = {}, {}, timedelta(0)
    previous = None
    for line in log.splitlines():
        match = EVENT.match(line)
        if not match:
            continue
        moment = datetime.strptime(match.group(1), "%H:%M:%S") + day
        if previous is not None and moment < previous:  # past midnight
            day += timedelta(days=1)
            moment += timedelta(days=1)
        previous = moment
        stage = match.group(2)
        first.setdefault(stage, moment)
        last[stage] = moment
    spans = {stage: (last[stage] - first[stage]).total_seconds() for stage in first}
    if first:
        spans["all jobs"] = (max(last.values()) - min(first.values())).total_seconds()
    return spans


def quick_demo_log(env: dict) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-m", "protoscope.cli", "demo", "--quick", "--out", f"{tmp}/demo"],
                              env=dict(os.environ, COLUMNS="200", **env), capture_output=True, text=True,
                              timeout=1800, check=True)
    return done.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", nargs=2, type=Path, metavar=("NATIVE", "AVX2"))
    args = parser.parse_args(argv)
    if args.logs:
        logs = [path.read_text() for path in args.logs]
        print(f"full demo, from its logs: {args.logs[0]} (native) and {args.logs[1]} (AVX2 emulation)")
    else:
        import torch

        print(f"quick demo, run now: native ISA ({torch.backends.cpu.get_cpu_capability()}, bf16 "
              f"{'native' if torch.ops.mkldnn._is_mkldnn_bf16_supported() else 'not native'}) then AVX2 emulation")
        logs = [quick_demo_log({}), quick_demo_log(AVX2)]
    native, avx2 = (stage_spans(log) for log in logs)
    print(f"{'stage':10s} {'native s':>9s} {'AVX2 s':>9s} {'AVX2/native':>12s}")
    for stage in native:
        if stage in avx2:
            ratio = avx2[stage] / native[stage] if native[stage] else float("nan")
            print(f"{stage:10s} {native[stage]:9.0f} {avx2[stage]:9.0f} {ratio:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
