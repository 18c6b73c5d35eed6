"""Whether the figures are up to date with the store: a stamp of every result file's name, size and
modification time, recorded after the figures are drawn. Drawing every figure takes seconds to
minutes on a large study; a rerun of `protoscope run` on a finished store should not pay that."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..atomic import write_text

# What the figures do not depend on: themselves, the site, the checkpoints' training state.
_SKIPPED = {"figures", "site"}
STAMP = ".drawn-from"


def store_stamp(store: str | Path) -> str:
    digest = hashlib.sha1()
    root = Path(store)
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if here == root:
            dirs[:] = [d for d in dirs if d not in _SKIPPED]
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".tmp") or name.endswith(".partial"):
                continue
            info = (here / name).stat()
            digest.update(f"{(here / name).relative_to(root)}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def figures_are_current(store: str | Path) -> bool:
    path = Path(store) / "figures" / STAMP
    return path.is_file() and path.read_text() == store_stamp(store)


def mark_figures_current(store: str | Path) -> None:
    write_text(Path(store) / "figures" / STAMP, store_stamp(store))
