"""Checkpoint series: a run folder with `run.yaml` and one checkpoint per epoch.

Epoch 0 is the initialization. Our own checkpoints are safetensors; a user's
`.pt`/`.pth` is read with `torch.load(weights_only=True)`, so a checkpoint can
never execute code. Every failure names the file.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..atomic import atomic_path
from ..errors import UserError

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")
_EPOCH_FILE = re.compile(r"^epoch[_-]?(\d+)\.(safetensors|pt|pth)$")


def checkpoint_name(epoch: int) -> str:
    return f"epoch_{epoch:03d}.safetensors"


def save_state(path: str | Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write a flat tensor dict as safetensors, atomically."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from safetensors or a weights-only torch file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise UserError(f"Corrupt or unreadable checkpoint {path}: {exc}") from exc
    if path.suffix in (".pt", ".pth"):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise UserError(
                f"Refused to load {path}: it holds more than tensors (a pickled object), and protoscope never "
                "unpickles code. Save a plain state_dict (torch.save(model.state_dict(), ...)) or use safetensors."
            ) from exc
        except (RuntimeError, EOFError, OSError, ValueError) as exc:
            raise UserError(f"Corrupt or unreadable checkpoint {path}: {exc}") from exc
        for key in ("state_dict", "model", "model_state_dict"):  # common wrappers
            if isinstance(obj, dict) and isinstance(obj.get(key), dict):
                obj = obj[key]
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise UserError(f"{path} is not a state dict of tensors.")
        return obj
    raise UserError(f"Unsupported checkpoint format {path.suffix!r} ({path}); use one of {', '.join(CHECKPOINT_SUFFIXES)}.")


def check_fits(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], path, hint: str = "") -> None:
    """Raise a UserError naming the file and the first missing/unexpected/mis-shaped keys."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {'; '.join(keys[:3])})")
        raise UserError(f"Checkpoint {path} does not fit the architecture: {', '.join(parts)}.{' ' + hint if hint else ''}")


def load_into(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a checkpoint into `model` strictly; a mismatch names the file and the keys."""
    state = load_state(path)
    state = {k.removeprefix("module."): v for k, v in state.items()}  # DataParallel prefix
    check_fits(state, model.state_dict(), path)
    model.load_state_dict(state)
    return model


def epoch_files(folder: str | Path) -> dict[int, Path]:
    """{epoch: checkpoint path} for the files named epoch_<n>.<ext> in a run folder."""
    found: dict[int, Path] = {}
    for path in sorted(Path(folder).iterdir()) if Path(folder).is_dir() else []:
        match = _EPOCH_FILE.match(path.name)
        if match:
            epoch = int(match.group(1))
            if epoch in found:
                raise UserError(f"Two checkpoints for epoch {epoch} in {folder}: {found[epoch].name}, {path.name}")
            found[epoch] = path
    return dict(sorted(found.items()))
