"""The quick demo's runs trained while `protoscope watch` follows them: the same store as after the fact.

Three processes, as a user would start them, each on one thread (the same float sums everywhere):
`protoscope run` of the quick demo's study in one store (after training), then, for a second store,
`protoscope watch STUDY.yaml` started first and `protoscope train STUDY.yaml` beside it. At the end
it prints the watch's rounds (what was complete when, and where provisional results were made), the
`differences` between the two stores (they must be none) and the temporary files left (none).
`tests/test_watch.py` does the same on a smaller study inside the suite's time.

    python bench/watch_equality.py --out /tmp/watch_equality > bench/results/watch_equality_quick.txt
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from protoscope.demo import demo_study
from protoscope.store.compare import differences, leftovers

ENV = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "protoscope.cli", *args]


def _study_file(out: Path, name: str) -> Path:
    study = demo_study(out / name, quick=True)
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study.model_dump(mode="json", exclude_defaults=True), sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="an empty folder for the two stores")
    p.add_argument("--poll", type=float, default=1.0)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    after, watched = _study_file(args.out, "after"), _study_file(args.out, "watched")
    start = time.perf_counter()
    made = subprocess.run(_cli("run", str(after)), env=ENV, capture_output=True, text=True)
    if made.returncode:
        print(made.stdout[-3000:] + made.stderr[-3000:])
        return 1
    print(f"after the fact: protoscope run, {time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    watcher = subprocess.Popen(_cli("watch", str(watched), "--poll", str(args.poll), "--no-site"), env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    trainer = subprocess.run(_cli("train", str(watched)), env=ENV, capture_output=True, text=True)
    trained = time.perf_counter() - start
    said, _ = watcher.communicate()
    print(f"while training: protoscope train {trained:.0f} s, beside protoscope watch, which ended "
          f"{time.perf_counter() - start - trained:.0f} s after it (exit codes {trainer.returncode}, {watcher.returncode})")
    print("the watch's rounds:")
    for line in said.splitlines():
        if line.startswith(("checkpoints complete:", "provisional results")):
            print("  " + line)
    found = differences(args.out / "watched", args.out / "after")
    print(f"differences: {len(found)}" + "".join(f"\n  {d}" for d in found[:20]))
    print(f"leftovers: {len(leftovers(args.out / 'watched'))}")
    return int(bool(found) or trainer.returncode != 0 or watcher.returncode != 0)


if __name__ == "__main__":
    sys.exit(main())
