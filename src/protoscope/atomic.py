"""Atomic file writes: write beside the target, then rename over it.

A reader (or a resumed run) sees either the old file or the complete new one,
never half of one — what makes "resume where it stopped" safe.
"""

from __future__ import annotations

import errno
import glob
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError

# Write failures a user fixes (permissions, a read-only mount, a full disk or quota), not bugs.
WRITE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def write_error(target, exc: OSError, action: str = "write") -> UserError:
    """One line naming the file that could not be written (or read) and why."""
    why = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "free some space (or use --store elsewhere) and run the same command again; finished work is kept"
    else:
        hint = "check its permissions (a store must be writable), or use --store elsewhere"
    return UserError(f"Cannot {action} {target}: {why}; {hint}.")


def _read_umask() -> int:
    mask = os.umask(0o022)  # the umask can only be read by setting it; put it back at once
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # once, at import, before any thread could race the two calls


@contextmanager
def atomic_path(target: str | os.PathLike):
    """Yield a temporary path in the target's folder; rename it over the target on success.

    On failure the temporary file is removed, so nothing half-written is left; a write the
    user can fix (permissions, read-only store, full disk) is a UserError naming the target.
    """
    target = Path(target)
    created = []  # folders this write creates, deepest first: removed again if it fails
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        created.append(folder)
        folder = folder.parent
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(target)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a result is as readable as any file the user writes
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        for folder in created:
            try:
                folder.rmdir()
            except OSError:  # not empty (another job wrote there) or never made
                break
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
            raise write_error(target, exc) from exc
        raise


def remove_stale(target: Path) -> int:
    """Delete the temporary files an earlier, killed write of `target` left beside it; returns how many.

    Safe because a target written through `atomic_path` has one writer at a time (the job that owns
    it); a file several workers may write at once (recorded settings) goes through `link_if_absent`."""
    removed = 0
    for path in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def link_if_absent(target: Path, text: str) -> bool:
    """Write `text` to `target` unless it exists, atomically and race-free; True if this call wrote it.

    The text goes to a temporary file beside the target, which is hard-linked into place: `os.link`
    fails when the target exists, so of several concurrent writers exactly one wins and nobody ever
    sees half a file."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:  # a read-only store, a full disk: the user's to fix
        if exc.errno in WRITE_ERRNOS:
            raise write_error(target, exc) from exc
        raise
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.link(tmp, target)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)
