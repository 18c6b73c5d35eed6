"""What ties a worker's life to the command that started it: no Ctrl-C of its own, death with its parent.

An orphaned worker would keep a core and a GB of memory, and race the rerun for the store, so a
pool worker dies with its parent (`worker_starts`), and the processes of a local Ray cluster are
reaped when the driver dies (`sharing_our_fate`).
"""

from __future__ import annotations

import ctypes
import inspect
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager


@contextmanager
def no_ctrl_c():
    """SIGINT blocked in this thread for the block: a process spawned in it starts with SIGINT
    blocked, so a Ctrl-C to the process group never reaches a worker, even while it imports. A
    Ctrl-C that comes meanwhile waits, and is raised here when the block ends."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def worker_starts(parent: int) -> None:
    """A pool worker's first act: ignore Ctrl-C (the parent handles it), and die with the parent.

    On Linux the kernel SIGKILLs the worker when the thread that spawned it ends
    (PR_SET_PDEATHSIG; see `ProcessExecutor._pool_here`). A thread polling the parent's pid covers
    the rest: other systems, and a worker stuck where no signal is awaited. A parent gone before
    this ran is caught by the first check."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _set_parent_death_signal()
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=_exit_when_orphaned, args=(parent,), name="protoscope-parent-watch",
                     daemon=True).start()


def _set_parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(ctypes.c_int(1), ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0), ctypes.c_ulong(0),
                   ctypes.c_ulong(0))  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):  # no libc to load: the watch thread alone
        pass


def _exit_when_orphaned(parent: int, every: float = 0.5) -> None:
    """Poll the parent's pid: once it changes (to init, or a subreaper), the parent is gone."""
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)  # not sys.exit: no cleanup that could block on the dead parent's queues


# A local Ray cluster outlives a SIGKILLed driver: Ray kills its node's own processes with the driver,
# but its dashboard and runtime-env agents then wait 60 s for the dead GCS before they exit (Ray 2.60).
# So the processes it starts carry a mark in their environment, and a reaper (a child of this process,
# one per process) SIGKILLs every marked process as soon as this process is gone.
_MARK = "PROTOSCOPE_FATE"
_reaper: tuple[int, str, subprocess.Popen] | None = None  # the pid it watches, the mark it reaps, itself


@contextmanager
def sharing_our_fate(local: bool):
    """Processes started in the block carry this process's mark, and are reaped when it dies (Linux;
    elsewhere, and for a cluster not started here, nothing is done)."""
    global _reaper
    if not local or not os.path.isdir("/proc"):
        yield
        return
    if _reaper is None or _reaper[0] != os.getpid():
        mark = f"{_MARK}={os.getpid()}-{uuid.uuid4().hex}"
        code = f"{inspect.getsource(_reap)}\n_reap({os.getpid()}, {mark!r})\n"  # a bare interpreter: no torch
        reaper = subprocess.Popen([sys.executable, "-I", "-c", code], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _reaper = (os.getpid(), mark, reaper)
    before = os.environ.get(_MARK)
    os.environ[_MARK] = _reaper[1].partition("=")[2]
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(_MARK, None)
        else:
            os.environ[_MARK] = before


def _reap(driver: int, mark: str) -> None:
    """The reaper, run in its own interpreter (self-contained: it is sent as source): wait for the
    driver to die, then SIGKILL every process marked with `mark`.

    Marked processes are noted while the driver lives, since a process that sets its title (Ray's
    agents) may overwrite the memory its environment is read from; a pid is only killed while it has
    the start time it was noted with (a reused pid is another process)."""
    import os
    import signal
    import time

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C to the group is the driver's to handle
    entry = mark.encode()

    def started(pid):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                state, *fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            return None
        return None if state == b"Z" else fields[18]  # a zombie is dead already

    def marked():
        found = {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if entry in f.read().split(b"\0") and int(pid) != os.getpid():
                        found[int(pid)] = started(pid)
            except OSError:
                pass
        return found

    seen, tick = {}, 0
    while os.getppid() == driver:
        if tick % 4 == 0:  # once a second; the driver's death is seen within 0.25 s
            seen = {pid: start for pid, start in seen.items() if started(pid) == start} | marked()
        tick += 1
        time.sleep(0.25)
    for _ in range(8):  # again while any is left: the dying raylet may still be starting one
        seen |= marked()
        left = [pid for pid, start in seen.items() if start is not None and started(pid) == start]
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.25)
