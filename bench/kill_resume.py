"""Kill `protoscope run` at random moments, resume it each time, and compare with an uninterrupted run.

    python bench/kill_resume.py --out /tmp/kill [--kills 30] [--seed 0] [--study STUDY.yaml]

Without --study it writes a small study (two ResNet-18 runs of width 1/16 at 16 px, every stage on)
to OUT/study.yaml. It runs that study once uninterrupted (the reference store, timing each stage
from the job lines `protoscope run` prints when its output is not a terminal), then again in a
second store: each time, it waits for the first job of a target stage (`PLAN`: train, probe, evolve,
analyze, the activations rsa and align read, rsa, align, in pipeline order, stretched to the number
of kills), sleeps a random fraction of that stage's reference duration, and SIGKILLs the process;
then restarts it. The last restart runs
to the end. Finally the two stores are compared result by result (`protoscope.store.compare`):
checkpoints, prototypes, scores, activations, embeddings, RDMs, alignments, the metrics table (wall
times left out), every done mark, and no `*.partial` or temporary file left. Where each kill
landed (the stage and job last started, how long after) is printed, one line per kill.

Exit code 0 when the stores agree and nothing is left behind. `tests/test_kill_resume.py` runs
this with 10 kills; longer runs (`--kills 50`) are for a soak.
"""

from __future__ import annotations

import argparse
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

# `protoscope run`'s stages in order (rsa runs activations, then RDMs)
ORDER = ("train", "probe", "evolve", "analyze", "activations", "rsa", "align")
# where the kills go, in pipeline order: a resumed run passes the stages already stored
PLAN = ("train", "train", "probe", "evolve", "evolve", "evolve", "analyze", "analyze", "activations", "rsa",
        "align", "align")


def small_study(store: Path) -> dict:
    """Every stage on, small enough that a run takes about half a minute on one core."""
    return {
        "name": "kill-resume", "store": str(store), "workers": 0, "layers": ["layer1", "layer2"],
        "defaults": {
            "arch": "resnet18", "width": 0.0625, "small_input": True, "epochs": 2,
            "data": {"name": "shapes", "image_size": 16, "epoch_size": 128},
            "optimizer": {"lr": 0.05, "batch_size": 32, "warmup_steps": 1},
            "simclr": {"temperature": 0.5, "hidden_dim": 16, "projection_dim": 8,
                       "augment": {"gaussian_blur": 0.0, "min_scale": 0.5}},
        },
        "runs": [{"condition": "clrjit", "seed": 0}, {"condition": "clrjit", "seed": 1}],
        "probe": {"train_size": 64, "test_size": 32, "adam_epochs": 5},
        "synth": {"repeats": 2, "pool_size": 32, "cma_generations": 2, "adam_steps": 6, "rf_samples": 8},
        "analyze": {"spaces": ["pixel", {"run": "clrjit-s1"}], "distances": ["mse", "cosine"]},
        "rsa": {"images": 32, "snapshots": [0, 2]},
        "align": {"images": 32, "mi_samples": 400, "sparse_iter": 100, "track": ["clrjit-s0"]},
    }


@dataclass
class Attempt:
    """One start of `protoscope run`: the job lines it printed (seconds since start), how it ended."""

    lines: list[tuple[float, str]]
    returncode: int
    killed_after: float | None = None  # seconds after the target stage's first job started
    stopped_in: float | None = None  # seconds from the signal to the process's exit
    pid: int = 0  # the process's (with `session`, its process group's too)

    def last_job(self) -> str:
        """The job last started or finished before the end: where a kill landed."""
        jobs = [text for _, text in self.lines if text.endswith(" started") or " finished in " in text]
        return jobs[-1] if jobs else "(before any job)"


def protoscope_command() -> list[str]:
    return [sys.executable, "-m", "protoscope.cli"]


def start(study: Path, store: Path, extra_env: dict | None = None, args: tuple = (),
          session: bool = False) -> subprocess.Popen:
    """`protoscope run STUDY --store STORE ARGS`; `session`: in a process group of its own, as a shell
    starts a job (its pid is the group's id)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", **(extra_env or {}))
    return subprocess.Popen([*protoscope_command(), "run", str(study), "--store", str(store), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=_ctrl_c_as_in_a_shell, start_new_session=session)


def _ctrl_c_as_in_a_shell() -> None:
    """SIGINT as a shell leaves it for a command it starts: handled by default and not blocked.

    A child inherits an ignored or blocked SIGINT from its parent, and Python only turns SIGINT into
    KeyboardInterrupt when it was not ignored at startup; a harness run from a process that ignores
    it (a test worker) would otherwise test nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def attempt(study: Path, store: Path, target: str | None = None, delay: float = 0.0,
            sig: int = signal.SIGKILL, args: tuple = (), session: bool = False,
            send=None, linger: float = 15.0) -> Attempt:
    """Run once; with a target, send `sig` `delay` seconds after the first job of that stage (or of a
    later one, when the target is already stored) starts: `send(proc, sig)` (default: to the process
    alone). `args` and `session` go to `start`. Its output is read to the end, or, after the signal,
    until `linger` seconds after the process exited (a child it left alive holds the pipe open)."""
    proc, began = start(study, store, args=args, session=session), time.monotonic()
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    seen, deadline, killed_after, stage_began, signalled, exited = [], None, None, None, None, None
    while True:
        timeout = 0.5 if signalled else None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            if signalled is None:
                (send or _to_the_process)(proc, sig)
                signalled = time.monotonic()
                killed_after = signalled - stage_began
                deadline = None
            elif proc.poll() is not None:
                exited = exited or time.monotonic()
                if time.monotonic() - exited > linger:
                    break
            continue
        if line is None:
            break
        seen.append((time.monotonic() - began, _strip_clock(line)))
        words = seen[-1][1].split()
        if (target and stage_began is None and words[-1:] == ["started"] and words[0] in ORDER
                and ORDER.index(words[0]) >= ORDER.index(target)):
            stage_began = time.monotonic()
            deadline = stage_began + delay
    returncode = proc.wait()
    stopped_in = None if signalled is None else (exited or time.monotonic()) - signalled
    return Attempt(seen, returncode, killed_after, stopped_in, proc.pid)


def _to_the_process(proc: subprocess.Popen, sig: int) -> None:
    proc.send_signal(sig)


def _strip_clock(line: str) -> str:
    head, _, rest = line.partition(" ")
    return rest if head.count(":") == 2 else line


def stage_durations(reference: Attempt) -> dict[str, float]:
    """Seconds from each stage's first job started to its last job finished, in the reference run."""
    first, last = {}, {}
    for t, text in reference.lines:
        stage = text.split()[0]
        if text.endswith(" started"):
            first.setdefault(stage, t)
        elif " finished in " in text:
            last[stage] = t
    return {stage: last.get(stage, t) - t for stage, t in first.items()}


def kill_and_resume(study: Path, store: Path, kills: int, durations: dict[str, float],
                    rng: random.Random, log=print) -> list[Attempt]:
    """`kills` SIGKILLs at random moments of the target stages, then one run to the end.

    The kills follow `PLAN` (stretched to `kills`), each a random fraction of its stage's reference
    duration after the stage's first job starts; where each one landed is logged."""
    attempts = []
    for k in range(kills):
        target = PLAN[k * len(PLAN) // kills]
        delay = rng.uniform(0.0, 0.5) * durations.get(target, 1.0)
        result = attempt(study, store, target, delay)
        attempts.append(result)
        where = (f"killed {result.killed_after:.2f} s after a {target}-or-later job started; "
                 f"landed in: {result.last_job()}" if result.killed_after is not None else "ran to the end")
        log(f"kill {k + 1:2d}: rc={result.returncode} {where}")
    final = attempt(study, store)
    attempts.append(final)
    log(f"final run: rc={final.returncode}, {sum(t.endswith(' started') for _, t in final.lines)} jobs left to run")
    return attempts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="a folder for the study and both stores")
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--study", type=Path, help="default: a small study written to OUT/study.yaml")
    args = parser.parse_args(argv)
    from protoscope.store.compare import differences, leftovers

    args.out.mkdir(parents=True, exist_ok=True)
    study = args.study
    if study is None:
        study = args.out / "study.yaml"
        study.write_text(yaml.safe_dump(small_study(args.out / "unused"), sort_keys=False))
    reference_store, killed_store = args.out / "reference", args.out / "killed"
    for folder in (reference_store, killed_store):  # both from scratch: the reference times each stage
        shutil.rmtree(folder, ignore_errors=True)
    start_time = time.perf_counter()
    reference = attempt(study, reference_store)
    if reference.returncode != 0:
        print("\n".join(t for _, t in reference.lines[-20:]))
        print(f"the uninterrupted run failed (rc={reference.returncode})")
        return 1
    durations = stage_durations(reference)
    print(f"reference run: {time.perf_counter() - start_time:.1f} s; stage seconds: "
          + ", ".join(f"{k} {v:.1f}" for k, v in durations.items()))
    attempts = kill_and_resume(study, killed_store, args.kills, durations, random.Random(args.seed))
    killed = [a for a in attempts if a.killed_after is not None]
    found = differences(reference_store, killed_store)
    left = leftovers(killed_store)
    print(f"kills={len(killed)} final_rc={attempts[-1].returncode} differences={len(found)} leftovers={len(left)}")
    for line in found[:20] + [f"left behind: {p}" for p in left[:20]]:
        print("  " + line)
    return 0 if attempts[-1].returncode == 0 and not found and not left else 1


if __name__ == "__main__":
    sys.exit(main())
