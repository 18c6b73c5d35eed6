"""Does watching slow the training beside it by more than the watch costs in CPU? (issue #30)

The quick demo's study is trained twice from scratch on this machine: alone, and with
`protoscope watch` running beside it (stopped with Ctrl-C when the training ends: the stages it
runs after training do not count). Printed: the training's wall seconds both ways, the watch's
CPU seconds (user + system, from the kernel's accounting of the process) and the machine's cores. The training's slowdown is to be compared with the watch's CPU seconds divided by
the cores the two share: a watch that slowed the training more than that would be wasting time,
not just taking its share.

    python bench/watch_beside.py > bench/results/watch_beside.txt
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "protoscope.cli", *args]


def _study(folder: Path, epochs: int | None) -> Path:
    from protoscope.demo import demo_study

    study = demo_study(folder / "store", quick=True)
    raw = yaml.safe_load(study.model_dump_json())
    if epochs is not None:
        for run in raw["runs"]:
            run["epochs"] = epochs
    path = folder / "study.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _train(study: Path) -> float:
    start = time.perf_counter()
    subprocess.run(_cli("train", str(study)), check=True, capture_output=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the quick demo's)")
    args = p.parse_args(argv)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        alone = _train(_study(Path(tmp) / "alone", args.epochs))
        study = _study(Path(tmp) / "beside", args.epochs)
        watcher = subprocess.Popen(_cli("watch", str(study), "--poll", "1"), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        beside = _train(study)
        watcher.send_signal(signal.SIGINT)  # Ctrl-C: what it used while the training ran is what counts
        _, _, usage = os.wait4(watcher.pid, 0)
    watch_cpu = usage.ru_utime + usage.ru_stime
    print(f"cores: {cores}; training alone {alone:.1f} s, beside a watch {beside:.1f} s "
          f"(+{beside - alone:.1f} s); the watch's CPU {watch_cpu:.1f} s, its share of {cores} cores "
          f"{watch_cpu / cores:.1f} s")
    print(f"slowdown_over_fair_share={(beside - alone) / max(watch_cpu / cores, 1e-9):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
