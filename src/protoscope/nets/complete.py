"""Is a checkpoint file completely written? Asked before a watching process reads one.

A training loop that saves while protoscope watches the folder may be caught half-way through
a file. A checkpoint counts as complete when one of these holds:

* a marker file `<checkpoint name>.done` lies beside it (any writer can promise it so);
* **safetensors**: the header parses and the last tensor's bytes end exactly at the end of
  the file (a writer killed half-way leaves it short);
* **torch.save's zip format** (`.pt`, `.pth`, `.ckpt`, `.bin`, `.pth.tar`, the default since
  torch 1.6): the zip's central directory, which is written last, is there, and every member it
  lists lies inside the file.

A file renamed into place when complete (protoscope's own writers: `atomic.atomic_path`, whose
temporary names fit no checkpoint pattern) passes the same checks. The legacy torch format
(before 1.6, `_use_new_zipfile_serialization=False`) cannot show that it is complete: it needs
the marker. No torch import here: the checks read bytes.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

MARKER = ".done"  # `<checkpoint name>.done`


def marker_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + MARKER)


def is_complete(path: str | Path) -> bool:
    """True when `path` is a completely written checkpoint (see the module docstring)."""
    path = Path(path)
    if marker_path(path).exists():
        return True
    try:
        if path.name.endswith(".safetensors"):
            return _safetensors_complete(path)
        return _zip_complete(path)
    except OSError:  # vanished or unreadable between listing and looking
        return False


def _safetensors_complete(path: Path) -> bool:
    """An 8-byte header length, a JSON header, and data that ends where the file ends."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return False
        (length,) = struct.unpack("<Q", head)
        if length > size - 8:
            return False
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, ValueError):
            return False
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    return 8 + length + max(ends, default=0) == size


def _zip_complete(path: Path) -> bool:
    """torch.save's zip: the central directory parses and lists members that fit in the file."""
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError):
        return False
    return bool(members) and all(m.header_offset + m.compress_size <= size for m in members)
