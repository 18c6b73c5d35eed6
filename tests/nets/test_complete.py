"""A checkpoint still being written is never taken for a complete one (`nets/complete.py`).

Each format is written by a real writer that is killed half-way (a subprocess, SIGKILL), and by
truncating a finished file at many points; only the finished file, or a marker, counts.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import save_file

from protoscope.nets.complete import is_complete, marker_path

pytestmark = pytest.mark.timeout(120)


def _state() -> dict:
    gen = torch.Generator().manual_seed(0)
    return {f"layer{i}.weight": torch.randn(64, 64, 3, 3, generator=gen) for i in range(4)}


def _write(kind: str, path) -> None:
    if kind == "safetensors":
        save_file(_state(), str(path))
    else:
        torch.save(_state(), path)


@pytest.mark.parametrize("kind, name", [("safetensors", "epoch_001.safetensors"), ("torch", "epoch_001.pt"),
                                        ("torch", "epoch=0-step=10.ckpt")])
def test_only_the_whole_file_is_complete(tmp_path, kind, name):
    whole = tmp_path / name
    _write(kind, whole)
    assert is_complete(whole)
    data = whole.read_bytes()
    cut = tmp_path / f"cut_{name}"
    for end in [0, 4, 8, 100, len(data) // 3, len(data) // 2, len(data) - 1000, len(data) - 1]:
        cut.write_bytes(data[:end])
        assert not is_complete(cut), f"{kind} cut at {end} of {len(data)} bytes taken for complete"


def test_a_writer_killed_half_way_leaves_an_incomplete_file(tmp_path):
    """A writer that streams the file out slowly, killed while writing: what it left is not complete."""
    whole = tmp_path / "whole.safetensors"
    _write("safetensors", whole)
    target = tmp_path / "epoch_002.safetensors"
    script = (f"import sys, time\ndata = open({str(whole)!r}, 'rb').read()\nwith open({str(target)!r}, 'wb') as f:\n"
              "    for i in range(0, len(data), 4096):\n        f.write(data[i:i + 4096]); f.flush(); time.sleep(0.002)\n")
    writer = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 30
    while (not target.exists() or target.stat().st_size < whole.stat().st_size // 4) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert 0 < target.stat().st_size < whole.stat().st_size
    assert not is_complete(target)


def test_a_marker_vouches_for_a_format_that_cannot(tmp_path):
    legacy = tmp_path / "epoch_003.pt"
    torch.save(_state(), legacy, _use_new_zipfile_serialization=False)
    assert not is_complete(legacy)  # the legacy format cannot show it is complete
    marker_path(legacy).write_text("")
    assert is_complete(legacy)
    assert not is_complete(tmp_path / "epoch_004.safetensors")  # missing: not complete
