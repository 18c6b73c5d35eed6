"""The job seam: execute plans, prepares, skips stored jobs and turns job events into progress."""

import pickle
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import pytest
from rich.progress import Progress

from protoscope.executors import LocalExecutor, make_executor
from protoscope.errors import UserError
from protoscope.jobs import Event, Job, run_job, stage_of
from protoscope.stages import execute


@dataclass(frozen=True)
class ToyStudy:
    store: Path
    device: str = "cpu"


class Killed(Exception):
    pass


class ToyStage:
    """Job (n,): writes n squared to a file; the file marks it done; n == fail raises."""

    name = "toy"
    fail = None

    def __init__(self):
        self.prepared = []

    def plan(self, study, runs):
        return [Job(REF, (n,), "even" if n % 2 == 0 else "odd") for n in range(5)]

    def prepare(self, study, jobs):
        self.prepared.append([j.key for j in jobs])
        Path(study.store).mkdir(exist_ok=True)

    def is_done(self, study, job):
        return (Path(study.store) / f"{job.key[0]}.txt").is_file()

    def run(self, study, job, device, emit):
        (n,) = job.key
        if n == self.fail:
            raise Killed
        emit("half way", n=n)
        (Path(study.store) / f"{n}.txt").write_text(str(n * n))
        return {"square": n * n, "device": str(device)}


TOY = ToyStage()
REF = f"{__name__}:TOY"


def test_execute_runs_what_is_missing_in_order_and_resumes(tmp_path):
    study = ToyStudy(tmp_path / "store")
    TOY.fail = 3
    with pytest.raises(Killed):
        execute(TOY, study)
    assert sorted(p.name for p in study.store.iterdir()) == ["0.txt", "1.txt", "2.txt"]
    TOY.fail = None
    outcome = execute(TOY, study)
    assert [j.key for j in outcome.finished] == [(3,), (4,)]  # only the missing ones, in plan order
    assert [j.key for j in outcome.skipped] == [(0,), (1,), (2,)]
    assert outcome.finished[Job(REF, (4,), "even")] == {"square": 16, "device": "cpu"}
    assert TOY.prepared[-1] == [(n,) for n in range(5)]  # prepared with the whole plan, before any job
    assert execute(TOY, study).done_now == 0


def test_events_started_progress_finished_failed(tmp_path):
    study, events = ToyStudy(tmp_path / "store"), []
    TOY.prepare(study, [])
    jobs = TOY.plan(study, None)[:2]
    LocalExecutor().run(study, jobs, None, events.append)
    assert [(e.kind, e.job.key) for e in events] == [("started", (0,)), ("progress", (0,)), ("finished", (0,)),
                                                     ("started", (1,)), ("progress", (1,)), ("finished", (1,))]
    assert events[1].info == "half way" and events[1].stats == {"n": 0}
    TOY.fail, events = 2, []
    try:
        with pytest.raises(Killed):
            LocalExecutor().run(study, [Job(REF, (2,))], None, events.append)
    finally:
        TOY.fail = None
    assert [e.kind for e in events] == ["started", "failed"] and isinstance(events[-1].error, Killed)


def test_progress_bars_per_group(tmp_path):
    study = ToyStudy(tmp_path / "store")
    TOY.prepare(study, [])
    (study.store / "0.txt").write_text("0")
    progress = Progress(disable=True)
    execute(TOY, study, progress=progress)
    tasks = {t.description: (t.completed, t.total) for t in progress.tasks}
    assert tasks == {"toy even": (3, 3), "toy odd": (2, 2)}


def test_jobs_pickle_and_run_in_another_process(tmp_path):
    """What a distributed executor needs: the job and the function that runs it travel by pickle."""
    study = ToyStudy(tmp_path / "store")
    TOY.prepare(study, [])
    jobs = TOY.plan(study, None)
    assert pickle.loads(pickle.dumps(jobs)) == jobs and stage_of(jobs[0]) is TOY
    assert pickle.loads(pickle.dumps(run_job)) is run_job
    with ProcessPoolExecutor(2, mp_context=get_context("fork")) as pool:
        results = list(pool.map(run_job, [study] * len(jobs), reversed(jobs)))
    assert [r["square"] for r in results] == [16, 9, 4, 1, 0]
    assert all(TOY.is_done(study, j) for j in jobs)


def test_unknown_executor_lists_the_valid_ones():
    with pytest.raises(UserError, match="valid: local"):
        make_executor("rya")


def test_a_wrong_device_is_refused_before_planning(tmp_path):
    with pytest.raises(UserError, match="gpu"):
        execute(TOY, ToyStudy(tmp_path / "store", device="gpu"))
    assert not (tmp_path / "store").exists()


def test_the_study_pickles(tmp_path):
    from protoscope.study import builtin_study, load_study

    study = load_study(builtin_study("demo"), {"store": str(tmp_path)})
    assert pickle.loads(pickle.dumps(study)) == study
    assert isinstance(Event("started", Job(REF, (0,))), Event)
