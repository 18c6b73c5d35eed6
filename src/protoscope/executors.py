"""Executors: who runs a stage's jobs, and where.

An executor has one method, ``run(study, jobs, device, on_event)``: run every
job (each through `jobs.run_job`, the module-level function a remote worker can
unpickle) and report ``Event``s — started, progress, finished (with the job's
stats), failed (then re-raise). `LocalExecutor` runs them in this process, in
order, as the stages always did; `ProcessExecutor` in one process per core of
this machine. A distributed executor (Ray: one task per job, retries, bounded
tasks in flight) implements the same method; since a
job's result depends only on its key and the study, it may run them anywhere.
An executor whose jobs run on other machines says so with ``remote = True``
(the driver then does not insist that the study's device exists here).

An executor is also a context manager, and `close()` releases what it started (a pool of
processes, a local Ray cluster): a command that makes one closes it before it returns, on success,
error or Ctrl-C, so nothing is left to the interpreter's exit. What it starts dies with this process
however this process dies (kill -9, the OOM killer): an orphaned worker would keep a core and a GB
of memory, and race the rerun for the store.
"""

from __future__ import annotations

import ctypes
import inspect
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from multiprocessing import get_context
from typing import Callable

from .errors import UserError
from .jobs import Event, Job, run_job


class _Closing:
    """`with make_executor(...) as executor:` closes it however the block ends."""

    def close(self, now: bool = False) -> None:
        """Nothing to release."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close(now=kind is not None)


class LocalExecutor(_Closing):
    """Jobs in this process, one after another, in plan order (the default)."""

    name = "local"
    remote = False

    def run(self, study, jobs: list[Job], device, on_event: Callable[[Event], None]) -> None:
        for job in jobs:
            on_event(Event("started", job))

            def emit(info: str = "", job=job, **stats) -> None:
                on_event(Event("progress", job, info, stats))

            try:
                result = run_job(study, job, device, emit)
            except BaseException as exc:
                on_event(Event("failed", job, error=exc))
                raise
            on_event(Event("finished", job, stats=result))


class ProcessExecutor(_Closing):
    """Jobs in `workers` processes of this machine at once (default: one per core), each with
    cores // workers threads (one, by default).

    Why: the jobs of a small study (a narrow net's training, one layer's prototypes) keep one core
    busy but not two. On 2 cores the demo's four runs train in 254 s, two at a time on one thread
    each, where three of them one after another on two threads take 311 s (`bench/results/demo_log.txt`,
    `demo_log_local_executor.txt`). A one-thread job gives the same bits as a one-thread local run
    (OMP_NUM_THREADS=1; tests/test_pooled_executors.py). Scripts that use it need the usual
    `if __name__ == "__main__":` guard: workers are spawned, and import the main module.
    The pool is started on first use and kept for the next stage. On a CUDA device the jobs run here,
    in order, on the one GPU, as `LocalExecutor` runs them.

    Workers never see Ctrl-C (they start with SIGINT blocked, then ignore it): this process alone
    handles it, ends them and shuts the pool down before the command says it was interrupted. A
    worker exits within a second when this process dies, however it died (`_worker_starts`).
    """

    name = "processes"
    remote = False

    def __init__(self, workers: int | None = None):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.workers = max(1, workers or cores)
        self.threads = max(1, cores // self.workers)
        self._pool: ProcessPoolExecutor | None = None
        self._owner: threading.Thread | None = None

    def run(self, study, jobs: list[Job], device, on_event: Callable[[Event], None]) -> None:
        from .runtime import resolve_device

        if resolve_device(device if device is not None else study.device).type == "cuda":
            LocalExecutor().run(study, jobs, device, on_event)
            return
        queue, pending = list(jobs), {}
        with _threads(self.threads):  # workers spawned now inherit it: oneDNN reads it at import
            try:
                pool = self._pool_here()
                while queue or pending:
                    while queue and len(pending) < self.workers:
                        job = queue.pop(0)
                        with _no_ctrl_c():  # a worker is spawned by `submit`; it inherits the blocked SIGINT
                            future = pool.submit(run_job, study, job, device)
                        pending[future] = job
                        on_event(Event("started", job))
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        job, error = pending.pop(future), future.exception()
                        if error is not None:
                            on_event(Event("failed", job, error=error))
                            raise error
                        on_event(Event("finished", job, stats=future.result()))
            except BaseException:
                self.close(now=True)  # an error or Ctrl-C: the jobs still running stop too
                raise

    def _pool_here(self) -> ProcessPoolExecutor:
        """The pool, made by the thread that uses it: it spawns its workers from that thread, and on
        Linux a worker dies with the thread that spawned it (`_worker_starts`), so a pool made by
        another thread (which may be gone) is closed and a new one made."""
        if self._pool is not None and self._owner is not threading.current_thread():
            self.close()
        if self._pool is None:
            with _no_ctrl_c():  # the queues start the resource tracker: a child of this process too
                self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"),
                                                 initializer=_worker_starts, initargs=(os.getpid(),))
            self._owner = threading.current_thread()
        return self._pool

    def close(self, now: bool = False) -> None:
        """Shut the pool down and wait for its workers, releasing its queues and threads.

        `now`: first SIGKILL the workers, so the jobs they run stop at once (on an error or Ctrl-C;
        a half-written block is never marked done, and the rerun redoes it). Otherwise idle workers
        exit when told to. Either way nothing of the pool outlives this call."""
        pool, self._pool, self._owner = self._pool, None, None
        if pool is None:
            return
        if now:
            # the pool's own table of its workers (Python 3.14 adds `kill_workers()` for this)
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.kill()
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _no_ctrl_c():
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


def _worker_starts(parent: int) -> None:
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


@contextmanager
def _threads(count: int):
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(count)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before


class RayExecutor(_Closing):
    """One Ray task per job, on the Ray cluster at `address` or on a local one started here.

    Each task asks for `cpus` CPUs, and one GPU when the cluster has GPUs (Ray then shows the task
    only its own GPU, so the study's ``device: auto`` finds it). A task whose worker dies is retried
    up to `max_retries` times; a job that raises is not (it would raise again): the others in flight
    are cancelled and its error is raised here, a `UserError` as itself. At most `in_flight` tasks
    are submitted at once (default: twice the cluster's CPUs) and `ray.wait` frees a slot, so a plan
    of a million jobs never becomes a million pending tasks. The study travels once (`ray.put`);
    the store it names must be a path every worker sees (a shared file system).
    `close()` shuts down the Ray this executor connected to (a local cluster started here stops);
    a Ray connected before it is left as it is.
    """

    name = "ray"
    remote = True

    def __init__(self, address: str | None = None, in_flight: int | None = None, max_retries: int = 3,
                 cpus: float = 1):
        self.address, self.in_flight, self.max_retries, self.cpus = address, in_flight, max_retries, cpus
        self._connected = False

    def run(self, study, jobs: list[Job], device, on_event: Callable[[Event], None]) -> None:
        import ray

        if not ray.is_initialized():
            ray, self._connected = connect_ray(self.address), True
        resources = ray.cluster_resources()
        task = ray.remote(run_job).options(num_cpus=self.cpus, num_gpus=1 if resources.get("GPU", 0) >= 1 else 0,
                                           max_retries=self.max_retries, retry_exceptions=False)
        limit = self.in_flight or max(1, 2 * int(resources.get("CPU", 1)))
        study_ref, queue, pending = ray.put(study), list(jobs), {}
        try:
            while queue or pending:
                while queue and len(pending) < limit:
                    job = queue.pop(0)
                    pending[task.remote(study_ref, job, device)] = job
                    on_event(Event("started", job))
                ready, _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(ready[0])
                try:
                    stats = ray.get(ready[0])
                except ray.exceptions.RayTaskError as exc:
                    error = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
                    on_event(Event("failed", job, error=error))
                    raise error from None
                on_event(Event("finished", job, stats=stats))
        finally:
            for ref in pending:  # a failure or Ctrl-C: stop the rest (a half-written block is never marked done)
                ray.cancel(ref, force=True)

    def close(self, now: bool = False) -> None:
        if self._connected:
            import ray

            self._connected = False
            ray.shutdown()


def connect_ray(address: str | None = None):
    """The `ray` module, connected: to `address` (or $RAY_ADDRESS), else to a new local cluster,
    whose processes die with this one (`_sharing_our_fate`).

    Ray waits forever for a head node that does not answer, so a given address is tried first with a
    plain TCP connection (5 s): a wrong one is a one-line error, not a hang."""
    import ray

    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address not in (None, "auto", "local"):
        check_answers(address)
    with _sharing_our_fate(address in (None, "local")):
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    return ray


# A local Ray cluster outlives a SIGKILLed driver: Ray kills its node's own processes with the driver,
# but its dashboard and runtime-env agents then wait 60 s for the dead GCS before they exit (Ray 2.60).
# So the processes it starts carry a mark in their environment, and a reaper (a child of this process,
# one per process) SIGKILLs every marked process as soon as this process is gone.
_MARK = "PROTOSCOPE_FATE"
_reaper: tuple[int, str, subprocess.Popen] | None = None  # the pid it watches, the mark it reaps, itself


@contextmanager
def _sharing_our_fate(local: bool):
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


def check_answers(address: str, timeout: float = 5.0) -> None:
    """Refuse a Ray address (``host:port`` or ``ray://host:port``) where nothing accepts a connection."""
    where = address.removeprefix("ray://")
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"Ray address {address!r} is not host:port (e.g. 10.0.0.5:6379, or ray://10.0.0.5:10001).")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise UserError(f"The Ray cluster at {address} does not answer ({reason}); start it with "
                        "`ray start --head` there, or check --ray-address.") from None


EXECUTORS = {"local": LocalExecutor, "processes": ProcessExecutor, "ray": RayExecutor}


def make_executor(name: str | None = None, address: str | None = None):
    """An executor by name (unknown names are an error listing the valid ones). A Ray address
    implies the Ray executor; it makes no sense with another."""
    name = name or ("ray" if address else "local")
    if name not in EXECUTORS:
        raise UserError(f"Unknown executor {name!r}; valid: {', '.join(EXECUTORS)}")
    if name == "ray":
        if address and address not in ("auto", "local"):
            check_answers(address)  # before any stage touches the store
        return RayExecutor(address)
    if address:
        raise UserError(f"--ray-address is for --executor ray, not {name!r}.")
    return EXECUTORS[name]()
