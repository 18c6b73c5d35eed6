"""The executors that run several jobs at once: Ray on a local cluster (`ray.init(num_cpus=2)`,
shared) and a pool of local processes. One task per job, in-flight tasks bounded, a job's error
raised as itself, and the quick demo's store equal to the one-thread local run's (the same on a
local Ray: tests/test_orphans.py, on a smaller study)."""

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from protoscope.errors import UserError
from protoscope.executors import ProcessExecutor, RayExecutor
from protoscope.jobs import Job
from protoscope.stages import execute

pytestmark = pytest.mark.xdist_group("quick_demo")  # with the local quick demo it is compared to


@dataclass(frozen=True)
class ToyStudy:
    store: Path
    device: str = "cpu"


class PidStage:
    """Job (n,): writes the pid that ran it to n.txt; job 3 of a study named 'bad' is a user error."""

    name = "pid"

    def plan(self, study, runs):
        return [Job(f"{__name__}:PID", (n,), "all") for n in range(6)]

    def prepare(self, study, jobs):
        Path(study.store).mkdir(exist_ok=True)

    def is_done(self, study, job):
        return (Path(study.store) / f"{job.key[0]}.txt").is_file()

    def run(self, study, job, device, emit):
        import time

        if job.key == (3,) and Path(study.store).name == "bad":
            raise UserError("job 3 is bad")
        time.sleep(0.2)
        (Path(study.store) / f"{job.key[0]}.txt").write_text(str(os.getpid()))
        return {"n": job.key[0]}


PID = PidStage()


@pytest.fixture(params=["ray", "processes"])
def pooled(request):
    """A maker of an executor with two jobs in flight."""
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
        return lambda: RayExecutor(in_flight=2)
    return lambda: ProcessExecutor(workers=2)


def test_each_job_is_a_task_with_at_most_in_flight_at_once(pooled, tmp_path):
    events = []
    outcome = execute(PID, ToyStudy(tmp_path / "good"), pooled(), progress=None)
    assert sorted(job.key for job in outcome.finished) == [(n,) for n in range(6)]
    assert outcome.finished[Job(f"{__name__}:PID", (4,), "all")] == {"n": 4}
    pids = {int(p.read_text()) for p in (tmp_path / "good").glob("*.txt")}
    assert len(pids) >= 1 and os.getpid() not in pids  # ran in worker processes

    again = ToyStudy(tmp_path / "again")
    PID.prepare(again, [])
    pooled().run(again, PID.plan(None, None), None, events.append)
    running, most = 0, 0
    for event in events:
        running += {"started": 1, "finished": -1}.get(event.kind, 0)
        most = max(most, running)
    assert most == 2 and [e.kind for e in events].count("finished") == 6


def test_a_failing_job_raises_its_own_error_and_the_rest_stop(pooled, tmp_path):
    events = []
    study = ToyStudy(tmp_path / "bad")
    PID.prepare(study, [])
    with pytest.raises(UserError) as caught:
        pooled().run(study, PID.plan(None, None), None, events.append)
    assert str(caught.value) == "job 3 is bad"  # the user's one line, not a wrapped traceback
    assert [e.job.key for e in events if e.kind == "failed"] == [(3,)]
    assert (3,) not in {e.job.key for e in events if e.kind == "finished"}
    assert not any(e.job.key == (5,) and e.kind == "started" for e in events)  # never submitted


LOOPBACK_CHECKS = """
import socket
from protoscope.executors import _loopback_only

everywhere, loopback = socket.create_server(("0.0.0.0", 0)), socket.create_server(("127.0.0.1", 0))
with everywhere, loopback:
    print(_loopback_only(f"127.0.0.1:{everywhere.getsockname()[1]}"), _loopback_only(f"127.0.0.1:{loopback.getsockname()[1]}"),
          _loopback_only(f"localhost:{loopback.getsockname()[1]}"), _loopback_only(f"ray://127.0.0.1:{loopback.getsockname()[1]}"),
          _loopback_only(f"10.0.0.5:{loopback.getsockname()[1]}"), _loopback_only("auto"))
"""


def test_a_loopback_address_is_joined_on_loopback_only_where_the_cluster_answers_only_there():
    """Ray swaps a loopback host for this machine's interface address. Where a server answers at both
    (Ray's default cluster, on every interface), Ray's way stands; where it answers on loopback only,
    the driver stays there. Other addresses are Ray's business. In a fresh process, as a command
    meets it (a Ray already started in this one answers with its own node's address)."""
    import subprocess
    import sys

    pytest.importorskip("ray")
    said = subprocess.run([sys.executable, "-c", LOOPBACK_CHECKS], capture_output=True, text=True, timeout=120)
    assert said.stdout.split() == ["False", "True", "True", "False", "False", "False"], said.stderr[-2000:]


@pytest.mark.parametrize("address", [None, "local"])
def test_a_local_cluster_is_always_a_new_one(monkeypatch, address):
    """Given no address, `ray.init` joins any cluster it finds on this machine (another command's, or
    a dead head's address file left in /tmp/ray); a cluster protoscope starts is its own, on loopback."""
    ray = pytest.importorskip("ray")
    from ray._private import ray_constants

    from protoscope import executors

    asked = {}
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **options: asked.update(options, loopback=not ray_constants.ENABLE_RAY_CLUSTER))
    monkeypatch.setattr(executors, "sharing_our_fate", lambda local: contextlib.nullcontext())
    executors.connect_ray(address)
    assert asked["address"] == "local" and asked["loopback"] is True
