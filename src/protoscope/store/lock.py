"""One command writes a store at a time: a second one refuses in one line, naming the first.

Two commands on one store would each plan the same jobs, write the same blocks and rename the same
temporary files; one of them would crash halfway (or, worse, interleave two writes of a block).
Sharing the work safely would need a job queue in the store; refusing is what a user can act on.
The lock is the kernel's (`flock` on a file in the store): it is released when the holder exits,
however it exits (kill -9 included), so no stale lock is ever left to clear by hand. The file keeps
the holder's description for the refusal, and goes when the holder ends (a killed holder's file
stays, unlocked, until the next command ends); it is not a result (`compare` passes over it).

A store has two parts to lock: the checkpoints (`train` writes them) and the results (every other
stage). `protoscope train` in one shell and `protoscope watch` in another share a store by design:
one holds the checkpoints, the other the results. A command that does both (`run`, `demo`) holds both.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path

from ..errors import UserError
from . import layout

try:
    import fcntl
except ImportError:  # not a POSIX system: no lock to take
    fcntl = None

_held: dict[Path, int] = {}  # lock files this process holds -> nesting depth (a lock is per process)


def holder_description() -> str:
    """What the refusal names: the command line, its pid and host, and since when."""
    command = " ".join(["protoscope", *sys.argv[1:]]) if sys.argv and sys.argv[0] else "a Python session"
    return f"`{command}` (pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')})"


PARTS = tuple(layout.LOCKS)  # checkpoints, then results: taken in this order


@contextmanager
def writing(where, parts: tuple[str, ...] | None = None):
    """Hold the write locks of the store's `parts` (default: every part) for the block, or raise a
    `UserError` naming the command that holds one. Re-entrant within a process."""
    with ExitStack() as held:
        for part in PARTS:
            if parts is None or part in parts:
                held.enter_context(_holding(layout.lock(where, part).resolve()))
        yield


@contextmanager
def _holding(path: Path):
    """The lock on `path`, taken the first time this process asks for it; counted after that."""
    with _locked(path) if fcntl is not None and path not in _held else nullcontext():
        _held[path] = _held.get(path, 0) + 1
        try:
            yield
        finally:
            _held[path] -= 1
            if not _held[path]:
                del _held[path]


@contextmanager
def _locked(path: Path):
    """flock `path` (made if missing) for the block; on the way out remove it, and the folders made for
    it, so a command that wrote nothing leaves the store as it found it."""
    made = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = _open_locked(path)
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(holder_description() + "\n")
        handle.flush()
        yield
    finally:
        path.unlink(missing_ok=True)  # before the lock goes: a waiter then finds it gone (`_open_locked`)
        handle.close()  # closing the last descriptor releases the lock
        for folder in made:  # innermost first; a folder something else was written into stays
            try:
                folder.rmdir()
            except OSError:
                break


def _open_locked(path: Path):
    """The lock file, opened and locked; a `UserError` naming the holder when another has it."""
    while True:
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another command"
            handle.close()
            raise UserError(f"The store {path.parent} is in use by {holder}; wait for it to end, "
                            "or give this command another --store.") from None
        if _same_file(handle, path):
            return handle
        handle.close()  # the holder removed it between our open and our lock: lock the file there now


def _same_file(handle, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False
