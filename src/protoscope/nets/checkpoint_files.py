"""Which file of a run folder holds which epoch: the names, apart from reading the files.

It imports no torch, so a study can validate a run's `checkpoints` pattern when it loads.

Names found by default: ours, `epoch_<n>.<ext>`, and Lightning's, `epoch=<k>-step=<s>.ckpt`.
A run may name its own pattern, with these placeholders:

    {epoch}        epochs trained (0: the initialization), as protoscope counts
    {epoch_index}  the zero-based index of the epoch just finished, as Lightning and most
                   training loops count: protoscope's epoch = index + 1
    {step}         any number (the optimizer step), ignored

Lightning counts epochs from 0 as they finish, so its `epoch=<k>` holds the weights after k + 1
epochs: protoscope's epoch k + 1 (there is no epoch 0 unless the run saved one itself).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from ..errors import UserError

TORCH_SUFFIXES = (".pth.tar", ".pt", ".pth", ".ckpt", ".bin")  # what people name torch.save's files
CHECKPOINT_SUFFIXES = (".safetensors", *TORCH_SUFFIXES)
PLACEHOLDERS = {"epoch": r"(?P<epoch>\d+)", "epoch_index": r"(?P<epoch_index>\d+)", "step": r"\d+"}
DEFAULT_PATTERNS = ("epoch_{epoch}", "epoch-{epoch}", "epoch{epoch}", "epoch={epoch_index}-step={step}",
                    "epoch={epoch_index}")


def checkpoint_suffix(path: str | Path) -> str:
    """The file's checkpoint suffix (`.pth.tar` counts as one), or its last suffix when none fits."""
    name = Path(path).name
    return next((suffix for suffix in CHECKPOINT_SUFFIXES if name.endswith(suffix)), Path(path).suffix)


def check_checkpoint_pattern(pattern: str) -> re.Pattern:
    """The regular expression of a file-name pattern; ValueError saying what is valid otherwise."""
    fields = re.findall(r"{([^{}]*)}", pattern)
    unknown = [f for f in fields if f not in PLACEHOLDERS]
    if unknown:
        raise ValueError(f"checkpoints pattern {pattern!r}: unknown placeholder {{{unknown[0]}}}; valid: "
                         + ", ".join(f"{{{name}}}" for name in PLACEHOLDERS))
    if sum(f in ("epoch", "epoch_index") for f in fields) != 1:
        raise ValueError(f"checkpoints pattern {pattern!r} needs exactly one of {{epoch}} or {{epoch_index}}")
    if "/" in pattern or "\\" in pattern:
        raise ValueError(f"checkpoints pattern {pattern!r} names a file in the run folder, without '/'")
    if checkpoint_suffix(pattern) not in CHECKPOINT_SUFFIXES:
        raise ValueError(f"checkpoints pattern {pattern!r} must end with one of {', '.join(CHECKPOINT_SUFFIXES)}")
    return _compile(pattern, with_suffix=False)


def _compile(pattern: str, with_suffix: bool) -> re.Pattern:
    parts = re.split(r"({[^{}]*})", pattern)
    body = "".join(PLACEHOLDERS[p[1:-1]] if p.startswith("{") else re.escape(p) for p in parts)
    suffixes = "|".join(re.escape(s) for s in CHECKPOINT_SUFFIXES)
    return re.compile(f"^{body}(?:{suffixes})$" if with_suffix else f"^{body}$")


_DEFAULTS = [_compile(p, with_suffix=True) for p in DEFAULT_PATTERNS]


def file_epoch(name: str, pattern: str | None = None) -> int | None:
    """The epoch a file name holds under `pattern` (default: ours and Lightning's), or None."""
    for regex in [check_checkpoint_pattern(pattern)] if pattern else _DEFAULTS:
        found = regex.match(name)
        if found:
            fields = found.groupdict()
            return int(fields["epoch"]) if fields.get("epoch") is not None else int(fields["epoch_index"]) + 1
    return None


def epoch_files(folder: str | Path, pattern: str | None = None) -> dict[int, Path]:
    """{epoch: checkpoint path} of the files in a run folder whose names fit (see the module's docstring)."""
    found: dict[int, Path] = {}
    for path in sorted(Path(folder).iterdir()) if Path(folder).is_dir() else []:
        epoch = file_epoch(path.name, pattern)
        if epoch is not None and path.is_file():
            if epoch in found:
                raise UserError(f"Two checkpoints for epoch {epoch} in {folder}: {found[epoch].name}, {path.name}")
            found[epoch] = path
    return dict(sorted(found.items()))


_VISIBLE: ContextVar[dict | None] = ContextVar("visible_epochs", default=None)


@contextmanager
def only_epochs(visible: dict[str, set[int]]):
    """Read the named runs as if they had only these checkpoints: the provisional results of a run
    still training are computed on the epochs it has so far (`stages/provisional.py`), and a file
    still being written must never be read."""
    token = _VISIBLE.set(visible)
    try:
        yield
    finally:
        _VISIBLE.reset(token)


def run_checkpoints(study, run) -> dict[int, Path]:
    """{epoch: file} of a study's run, under its own pattern when it names one (within `only_epochs`)."""
    files = epoch_files(study.run_dir(run), run.checkpoints)
    visible = _VISIBLE.get()
    if visible is not None and run.name in visible:
        files = {e: path for e, path in files.items() if e in visible[run.name]}
    return files
