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

import ipaddress
import logging
import os
import socket
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from multiprocessing import get_context
from typing import Callable

from .errors import UserError
from .jobs import Event, Job, run_job
from .lifelines import no_ctrl_c, sharing_our_fate, worker_starts


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
    worker exits within a second when this process dies, however it died (`worker_starts`).
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
                        with no_ctrl_c():  # a worker is spawned by `submit`; it inherits the blocked SIGINT
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
        Linux a worker dies with the thread that spawned it (`worker_starts`), so a pool made by
        another thread (which may be gone) is closed and a new one made."""
        if self._pool is not None and self._owner is not threading.current_thread():
            self.close()
        if self._pool is None:
            with no_ctrl_c():  # the queues start the resource tracker: a child of this process too
                self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"),
                                                 initializer=worker_starts, initargs=(os.getpid(),))
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
    whose processes die with this one (`lifelines.sharing_our_fate`) and listen on 127.0.0.1 only.

    Ray waits forever for a head node that does not answer, so a given address is tried first with a
    plain TCP connection (5 s): a wrong one is a one-line error, not a hang. A cluster that answers
    on this machine's loopback only is joined on loopback (`_loopback_only`)."""
    import ray

    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    local = address in (None, "local")
    if not local and address != "auto":
        check_answers(address)
    with sharing_our_fate(local), ray_on_loopback(local or _loopback_only(address)):
        # "local", not None: given no address, Ray joins a cluster it finds on this machine (another
        # command's, or one whose head died and left its address file behind) instead of starting one
        ray.init(address="local" if local else address, include_dashboard=False, logging_level=logging.WARNING)
    return ray


# Ray's own switch (read when `ray` is imported, and by every process Ray starts): off, each node and
# driver takes 127.0.0.1 as its address, and Ray's servers bind that address instead of every interface.
_RAY_ON_LOOPBACK = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextmanager
def ray_on_loopback(on: bool = True):
    """Within the block, a Ray cluster started (or joined) here uses 127.0.0.1 only.

    Why: by default Ray gives each node this machine's interface address, and its GCS, raylets and
    workers listen on every interface; Ray's authentication may be off, and whoever reaches those
    ports runs code as this user. A cluster protoscope starts for one command on one machine needs
    no network. The switch Ray offers for this is an environment variable it reads at import, so an
    already imported `ray` has its constant set for the block too; the processes the cluster starts
    inherit the variable. Multi-node clusters on loopback (several nodes on this machine) work;
    `ray start --address` refuses to add a node in this mode, so add them from Python."""
    if not on:
        yield
        return
    from ray._private import ray_constants

    before_env, before = os.environ.get(_RAY_ON_LOOPBACK), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_RAY_ON_LOOPBACK], ray_constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before
        if before_env is None:
            os.environ.pop(_RAY_ON_LOOPBACK, None)
        else:
            os.environ[_RAY_ON_LOOPBACK] = before_env


def _loopback_only(address: str | None) -> bool:
    """Whether the cluster at a loopback `address` must be joined on loopback.

    Ray replaces a loopback host by this machine's interface address before it connects; a cluster
    started on 127.0.0.1 does not listen there, and the driver would retry forever. So where the
    cluster answers at the loopback address but not at the one Ray would use, the driver stays on
    loopback. A `ray://` address (Ray Client) is used as given."""
    if not address or address == "auto" or address.startswith("ray://"):
        return False
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
    if not loopback:
        return False
    from ray._private.services import get_node_ip_address

    instead = get_node_ip_address()  # what Ray connects to in place of a loopback host
    return not ipaddress.ip_address(instead).is_loopback and not _answers(instead, int(port), 2.0)


def _answers(host: str, port: int, timeout: float) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


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
