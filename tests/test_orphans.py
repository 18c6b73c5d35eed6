"""Nothing outlives a killed command: `protoscope run --executor processes` (or `ray`, on a local
cluster it starts) SIGKILLed mid-stage leaves no process of its group or of its process tree 10 s
later, and a rerun at once gives the store of an uninterrupted run; Ctrl-C to its process group ends
it within seconds, with protoscope's own line last (`bench/kill_resume.py` starts and signals it).
The same study on a local Ray gives the processes executor's store, and that cluster listens on
loopback only; on a two-node cluster on loopback, joined by `--ray-address 127.0.0.1:PORT`, losing a
node mid-stage still gives that store."""

import importlib.util
import ipaddress
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml

from protoscope.store.compare import differences, leftovers

pytestmark = [
    pytest.mark.xdist_group("orphans"),  # one worker: the reference run is shared
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc"),
]

_spec = importlib.util.spec_from_file_location("kill_resume", Path(__file__).parents[1] / "bench" / "kill_resume.py")
harness = sys.modules.setdefault("kill_resume", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(harness)

PROCESSES = ("--executor", "processes")
LOCAL_RAY = ("--executor", "ray", "--ray-address", "local")
WITHIN = 10.0  # seconds a process may outlive the command


def _table() -> dict[int, tuple[int, int, str, str]]:
    """pid -> (parent, group, start time, state) of every process now."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        table[int(name)] = (int(fields[1]), int(fields[2]), fields[19], fields[0])
    return table


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
    except OSError:
        return "?"


class Watch:
    """Signals the command and remembers what it had started: its process tree just before the
    signal (Ray's workers lead groups of their own) and its process group."""

    def __init__(self):
        self.group, self.tree, self.signalled = None, {}, None

    def kill_parent(self, proc, sig) -> None:
        self._note(proc)
        os.kill(proc.pid, sig)

    def signal_group(self, proc, sig) -> None:
        """As a terminal's Ctrl-C: to every process of the group."""
        self._note(proc)
        os.killpg(proc.pid, sig)

    def _note(self, proc) -> None:
        table, self.group = _table(), proc.pid
        tree, grew = {proc.pid}, True
        while grew:
            more = {pid for pid, (parent, *_) in table.items() if parent in tree} - tree
            tree, grew = tree | more, bool(more)
        self.tree = {pid: (table[pid][2], _command(pid)) for pid in tree if pid in table}
        self.signalled = time.monotonic()

    def alive(self) -> list[str]:
        """Processes of the tree or the group still running (a zombie is dead: it only waits to be reaped)."""
        table = _table()
        return [f"{pid} {self.tree[pid][1] if pid in self.tree else _command(pid)}"
                for pid, (_, group, started, state) in table.items()
                if state != "Z" and (group == self.group or self.tree.get(pid, (None,))[0] == started)]

    def left(self, within: float = WITHIN) -> list[str]:
        """What is still running `within` seconds after the signal ([] as soon as nothing is)."""
        while (alive := self.alive()) and time.monotonic() < self.signalled + within:
            time.sleep(0.2)
        return alive

    def end_all(self) -> None:
        for entry in self.alive():
            try:
                os.kill(int(entry.split()[0]), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def watch():
    watching = Watch()
    yield watching
    if watching.group is not None:
        watching.end_all()  # a failed test leaves nothing running either


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The small study (without align) run once, uninterrupted, on the processes executor: its store
    and each stage's duration."""
    out = tmp_path_factory.mktemp("orphans")
    study, settings = out / "study.yaml", harness.small_study(out / "unused")
    # no align jobs: its spectral refinement does not give the same clusters twice on every CPU
    # (scikit-learn on a disconnected 5-unit graph), and every stage's resume is test_kill_resume's
    settings["align"] = {"pairs": [], "track": []}
    study.write_text(yaml.safe_dump(settings, sort_keys=False))
    run = harness.attempt(study, out / "reference", args=PROCESSES)
    assert run.returncode == 0, "\n".join(text for _, text in run.lines[-20:])
    return study, out / "reference", harness.stage_durations(run)


def test_a_sigkilled_run_leaves_no_worker_and_a_rerun_gives_the_same_store(reference, tmp_path, watch):
    study, reference_store, durations = reference
    killed = harness.attempt(study, tmp_path / "store", "evolve", 0.3 * durations["evolve"], args=PROCESSES,
                             session=True, send=watch.kill_parent)
    assert killed.returncode == -signal.SIGKILL and killed.last_job().startswith("evolve")
    workers = [command for _, command in watch.tree.values() if "multiprocessing" in command]
    assert len(workers) >= 2, watch.tree  # the pool's workers and the resource tracker ran
    assert watch.left() == []
    final = harness.attempt(study, tmp_path / "store", args=PROCESSES)
    assert final.returncode == 0
    assert differences(reference_store, tmp_path / "store") == []
    assert leftovers(tmp_path / "store") == []


@pytest.mark.parametrize("stage, share", [("train", 0.15), ("evolve", 0.3)], ids=["workers-starting", "jobs-running"])
def test_ctrl_c_to_the_group_stops_it_with_protoscopes_line_last(reference, tmp_path, watch, stage, share):
    """As a terminal's Ctrl-C: while the workers still import (a worker that handled SIGINT itself
    printed its traceback then), or while they run evolve's jobs."""
    study, _, durations = reference
    stopped = harness.attempt(study, tmp_path / "store", stage, share * durations[stage], signal.SIGINT,
                              args=PROCESSES, session=True, send=watch.signal_group)
    assert stopped.returncode == 130 and stopped.stopped_in < WITHIN
    printed = [text for _, text in stopped.lines if text.strip()]
    assert printed[-1].startswith("interrupted: finished work is stored"), "\n".join(printed[-15:])
    noise = [text for text in printed if any(word in text for word in ("Traceback", "KeyboardInterrupt", "leaked",
                                                                        "Exception ignored"))]
    assert noise == []  # no process of the group said more
    assert not any(text.startswith("probe" if stage == "train" else "analyze") for text in printed)
    assert watch.left() == []


def _listening() -> dict[str, str]:
    """Socket inode -> "address:port" of every TCP socket listening in this network namespace."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                hexaddress, hexport = fields[1].split(":")
                raw = bytes.fromhex(hexaddress)  # 32-bit words in host (little-endian) order
                address = ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))
                found[fields[9]] = f"{getattr(address, 'ipv4_mapped', None) or address}:{int(hexport, 16)}"
    return found


def listening_sockets(pids) -> list[tuple[str, str]]:
    """(address:port, command) for every TCP socket one of `pids` listens on."""
    table, found = _listening(), []
    for pid in pids:
        for link in map(_link, _entries(Path(f"/proc/{pid}/fd"))):
            if link.startswith("socket:[") and link[8:-1] in table:
                found.append((table[link[8:-1]], _command(pid)))
    return found


def _entries(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:  # the process is gone
        return []


def _link(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:  # closed meanwhile (the listing's own descriptor, for one)
        return ""


def test_listening_sockets_reads_the_kernels_table(tmp_path):
    """The reader above, on sockets of known addresses: a wrong decoding would hide a public one."""
    import socket

    servers = [socket.create_server(("127.0.0.1", 0)), socket.create_server(("0.0.0.0", 0))]
    try:
        seen = {address for address, _ in listening_sockets([os.getpid()])}
        assert seen == {f"127.0.0.1:{servers[0].getsockname()[1]}", f"0.0.0.0:{servers[1].getsockname()[1]}"}
    finally:
        for server in servers:
            server.close()


def test_a_local_ray_run_gives_the_processes_store_and_listens_on_loopback_only(reference, tmp_path, watch):
    """Every stage's jobs as Ray tasks (one CPU each): checkpoints, prototypes, activations, RDMs,
    metrics equal bit for bit (`differences`), and nothing left half-written. While evolve's tasks
    run, every socket a process of the command's tree listens on is on 127.0.0.1 (the GCS, the
    raylet, the workers): Ray's own default is every interface."""
    pytest.importorskip("ray")
    study, reference_store, durations = reference
    sockets = []

    def look(proc, _sig):
        watch._note(proc)  # the command's process tree now
        sockets.extend(listening_sockets(watch.tree))

    run = harness.attempt(study, tmp_path / "store", "evolve", 0.3 * durations["evolve"], args=LOCAL_RAY, send=look)
    assert run.returncode == 0, "\n".join(text for _, text in run.lines[-20:])
    assert any("gcs_server" in command for _, command in sockets), sockets  # the cluster was seen
    assert [(address, command) for address, command in sockets if not address.startswith("127.")] == []
    assert differences(reference_store, tmp_path / "store") == []
    assert leftovers(tmp_path / "store") == []


@pytest.fixture
def two_node_cluster():
    """A real two-node Ray cluster on this machine, on loopback (Ray's `cluster_utils`, as Ray's own
    tests make one): a head and a second node of one CPU each."""
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    from protoscope.executors import ray_on_loopback

    with ray_on_loopback():
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        second = cluster.add_node(num_cpus=1)
    yield cluster, second
    cluster.shutdown()


def test_losing_a_node_of_a_loopback_cluster_mid_stage_still_gives_the_processes_store(reference, tmp_path,
                                                                                       two_node_cluster):
    """`--ray-address 127.0.0.1:PORT` to a cluster that listens on loopback only (Ray would connect to
    the interface address instead and wait forever). Mid-evolve the second node is removed with its
    processes killed while it runs jobs; Ray retries them on the head: the store equals the
    processes executor's."""
    study, reference_store, durations = reference
    cluster, second = two_node_cluster
    assert cluster.address.startswith("127.0.0.1:")
    running = []

    def remove_second_node(_proc, _sig):
        raylet = second.all_processes["raylet"][0].process.pid
        running.extend((pid, _command(pid)) for pid, (parent, *_) in _table().items() if parent == raylet)
        cluster.remove_node(second, allow_graceful=False)  # SIGKILL: its raylet and every worker

    run = harness.attempt(study, tmp_path / "store", "evolve", 0.3 * durations["evolve"],
                          args=("--ray-address", cluster.address), send=remove_second_node)
    assert run.returncode == 0, "\n".join(text for _, text in run.lines[-20:])
    assert any("run_job" in command for _, command in running), running  # the node died mid-job
    assert not [pid for pid, _ in running if _table().get(pid, (0, 0, "", "Z"))[3] != "Z"]  # and its workers
    assert differences(reference_store, tmp_path / "store") == []
    assert leftovers(tmp_path / "store") == []


def test_a_second_command_on_the_same_store_is_refused_and_the_first_finishes(reference, tmp_path):
    """Two shells, one study: the second `protoscope run` (started mid-evolve) says in one line who
    holds the store and exits 2 at once; the first ends as if alone."""
    import subprocess

    study, reference_store, durations = reference
    second = []

    def start_second(_proc, _sig):
        second.append(subprocess.run([*harness.protoscope_command(), "run", str(study), "--store", str(tmp_path / "store")],
                                     capture_output=True, text=True, timeout=120))

    run = harness.attempt(study, tmp_path / "store", "evolve", 0.3 * durations["evolve"], args=PROCESSES,
                          send=start_second)
    assert run.returncode == 0, "\n".join(text for _, text in run.lines[-20:])
    said = (second[0].stdout + second[0].stderr).strip().splitlines()
    assert second[0].returncode == 2 and len(said) == 1, said
    assert "is in use by `protoscope run" in said[0] and f"pid {run.pid} " in said[0], said
    assert differences(reference_store, tmp_path / "store") == []
    assert leftovers(tmp_path / "store") == []


def test_a_sigkilled_run_on_a_local_ray_leaves_nothing(reference, tmp_path, watch):
    pytest.importorskip("ray")
    study, _, durations = reference
    killed = harness.attempt(study, tmp_path / "store", "train", max(3.0, 0.5 * durations["train"]),
                             args=LOCAL_RAY, session=True, send=watch.kill_parent)
    assert killed.returncode == -signal.SIGKILL
    commands = [command for _, command in watch.tree.values()]
    assert any("raylet" in c for c in commands) and any(c.startswith("ray::") for c in commands), commands
    assert watch.left() == []
