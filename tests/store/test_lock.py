"""One writer per store part (`protoscope.store.lock`): a second command is refused in one line that
names the first; a killed holder leaves no lock behind; training and the other stages lock apart."""

import os
import signal
import subprocess
import sys

import pytest

from protoscope.errors import UserError
from protoscope.store import layout
from protoscope.store.compare import differences
from protoscope.store.lock import writing

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")

HOLD = """
import sys, time
from protoscope.store.lock import writing
with writing(sys.argv[1], tuple(sys.argv[2].split(","))):
    print("holding", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """Start another process that holds `parts` of the store at tmp_path/store until killed."""
    started = []

    def hold(parts: str = "checkpoints,results") -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "store"), parts, "run", "study.yaml"],
                                stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout.readline().strip() == "holding"
        return proc

    yield hold
    for proc in started:
        proc.kill()
        proc.wait()


def test_a_second_writer_is_refused_in_one_line_naming_the_first(tmp_path, holder):
    first = holder()
    with pytest.raises(UserError) as refused:
        with writing(tmp_path / "store"):
            pytest.fail("a second writer got the lock")
    said = str(refused.value)
    assert "\n" not in said and f"pid {first.pid}" in said and "in use by" in said and str(tmp_path / "store") in said


def test_a_killed_holder_leaves_no_lock(tmp_path, holder):
    first = holder()
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    with writing(tmp_path / "store"):  # the kernel released it with the process
        pass


def test_training_and_the_other_stages_lock_apart(tmp_path, holder):
    """`protoscope train` beside `protoscope watch`: checkpoints and results are separate locks."""
    holder("checkpoints")
    with writing(tmp_path / "store", ("results",)):
        pass
    with pytest.raises(UserError, match="in use by"):
        with writing(tmp_path / "store", ("checkpoints", "results")):
            pass


def test_one_process_takes_its_own_lock_again(tmp_path, holder):
    with writing(tmp_path / "store"):
        with writing(tmp_path / "store", ("results",)):
            pass
        # still held here: another process is refused
        proc = subprocess.run([sys.executable, "-c", HOLD, str(tmp_path / "store"), "results"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0 and "in use by" in proc.stderr


def test_the_lock_files_are_not_results_and_go_with_their_holder(tmp_path):
    """A command refused for bad input, which wrote nothing, leaves no trace: not even the store folder."""
    (tmp_path / "b").mkdir()
    with writing(tmp_path / "a" / "store"):
        assert {p.name for p in (tmp_path / "a" / "store").iterdir()} == set(layout.LOCKS.values())
        assert differences(tmp_path / "a" / "store", tmp_path / "b") == []
    assert list(tmp_path.iterdir()) == [tmp_path / "b"]


CONTEND = """
import os, sys, time
from protoscope.errors import UserError
from protoscope.store.lock import writing
store, held = sys.argv[1], 0
deadline = time.monotonic() + 3
while time.monotonic() < deadline:
    try:
        with writing(store, ("results",)):
            marker = os.open(os.path.join(store, "inside"), os.O_CREAT | os.O_EXCL)  # fails if another is inside
            os.close(marker)
            time.sleep(0.001)
            os.unlink(os.path.join(store, "inside"))
            held += 1
    except UserError:
        pass
print(held)
"""


def test_four_processes_never_hold_it_at_once(tmp_path):
    """Each holder removes the file as it lets go, while others open it: the lock stays exclusive
    (a process that locked a removed file looks again)."""
    (tmp_path / "store").mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", CONTEND, str(tmp_path / "store")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [proc.communicate(timeout=60) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err[-500:] for _, err in results]
    assert sum(int(out) for out, _ in results) > 20  # they took turns many times
