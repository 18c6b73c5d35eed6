"""Checkpoint series: a run folder with `run.yaml` and one checkpoint per epoch.

Epoch 0 is the initialization. Our own checkpoints are safetensors; a user's
torch file (`.pt`, `.pth`, `.ckpt`, `.bin`, `.pth.tar`) is read with
`torch.load(weights_only=True)`, so a checkpoint can never execute code: besides
tensors and plain containers, only hyper-parameter holders (`argparse.Namespace`,
Lightning's `AttributeDict`) are let through. Every failure names the file.

Which file holds which epoch (ours, Lightning's, a run's own pattern) is `checkpoint_files`.

A user's checkpoint may come in the forms people actually save (`fit_state`): a
plain state dict, one wrapped in `{"state_dict": …}`/`{"model": …}`, keys with
DataParallel's `module.` or torch.compile's `_orig_mod.`, or a whole training
model (lightly's SimCLR: `backbone.*` next to `projection_head.*`). Keys the
model has no module for (a classifier or projection head) are ignored with a
one-line note; missing keys and wrong shapes are always errors.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import re
from collections import Counter
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..atomic import atomic_path
from ..errors import UserError
from .checkpoint_files import (CHECKPOINT_SUFFIXES, TORCH_SUFFIXES, checkpoint_suffix, epoch_files,  # noqa: F401
                               run_checkpoints)

_WRAPPERS = ("state_dict", "model", "model_state_dict")  # {"state_dict": {...}, "epoch": 3, ...}
_COMPILED = re.compile(r"(?<![^.])_orig_mod\.")  # torch.compile's wrapper, at the start or after a dot
# Prefix words of an averaged copy of the network (MoCo/BYOL momentum encoder, EMA, DINO teacher):
# when a checkpoint holds the model twice, the online (gradient-trained) copy is loaded.
# MoCo names its momentum encoder `encoder_k` (the keys' encoder) beside the trained `encoder_q`.
_AVERAGED_COPY = {"momentum", "ema", "teacher", "target", "k"}


# The only objects besides tensors and plain containers that a checkpoint may hold: hyper-parameter
# holders (torch.load's weights-only allow list). Lightning's AttributeDict is read as a plain dict,
# under each name Lightning has pickled it as, so its class is never imported.
_LIGHTNING_ATTRIBUTE_DICTS = ("pytorch_lightning.utilities.parsing.AttributeDict",
                              "lightning_fabric.utilities.data.AttributeDict",
                              "lightning.fabric.utilities.data.AttributeDict",
                              "lightning.pytorch.utilities.parsing.AttributeDict")
SAFE_GLOBALS = [argparse.Namespace, *((dict, name) for name in _LIGHTNING_ATTRIBUTE_DICTS)]


log = logging.getLogger(__name__)


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
    with open(path, "rb") as f:
        if f.read(64).startswith(b"version https://git-lfs"):
            raise UserError(f"{path} is a Git LFS pointer, not the checkpoint: fetch the file itself (git lfs pull).")
    suffix = checkpoint_suffix(path)
    if suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise UserError(f"Corrupt or unreadable checkpoint {path}: {exc}") from exc
    if suffix in TORCH_SUFFIXES:
        try:
            with torch.serialization.safe_globals(SAFE_GLOBALS):
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            found = re.search(r"GLOBAL ([\w.]+)", str(exc))  # the weights-only unpickler names what it refused
            with open(path, "rb") as f:
                head = f.read(2)  # a pickle (protocol 2-5) starts with PROTO: 0x80, then the protocol
            if found is None and "Unsupported global" not in str(exc) and not (
                    head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")):
                raise UserError(f"Corrupt or unreadable checkpoint {path}: not a file torch.save wrote.") from exc
            raise UserError(
                f"Refused to load {path}: it holds more than tensors (a pickled object"
                f"{', ' + found.group(1) if found else ''}), and protoscope never "
                "unpickles code. Save a plain state_dict (torch.save(model.state_dict(), ...)) or use safetensors."
            ) from exc
        except Exception as exc:  # whatever torch.load trips over in a damaged file (zip, EOF, KeyError, ...)
            raise UserError(f"Corrupt or unreadable checkpoint {path}: {type(exc).__name__}: {exc}") from exc
        while isinstance(obj, dict):  # common wrappers, also nested ({"model": {"state_dict": ...}})
            inner = next((obj[key] for key in _WRAPPERS if isinstance(obj.get(key), dict)), None)
            if inner is None:
                break
            obj = inner
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise UserError(f"{path} is not a state dict of tensors.")
        return obj
    raise UserError(f"Unsupported checkpoint format {suffix!r} ({path}); use one of {', '.join(CHECKPOINT_SUFFIXES)}.")


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


def _views(state: dict[str, torch.Tensor], model: nn.Module, least: int):
    """(prefix, {model-style key: checkpoint key}) for every key prefix holding >= `least` keys.

    Under a prefix, the keys are also tried with leading numbers read as the model's children in
    order: lightly's `nn.Sequential(*list(resnet.children())[:-1])` backbone saves `conv1.weight`
    as `backbone.0.weight`."""
    counts = Counter([""] * len(state))
    for key in state:
        parts = key.split(".")
        counts.update(".".join(parts[:j]) + "." for j in range(1, len(parts)))
    children = [name for name, _ in model.named_children()]
    for prefix, count in counts.items():
        if count < least:
            continue
        view = {k[len(prefix):]: k for k in state if k.startswith(prefix)}
        yield prefix, view
        numbered = {}
        for rest, key in view.items():
            first, dot, tail = rest.partition(".")
            if dot and first.isdigit() and int(first) < len(children):
                rest = f"{children[int(first)]}.{tail}"
            numbered[rest] = key
        if numbered.keys() != view.keys() and len(numbered) == len(view):
            yield prefix, numbered


def _ignored_note(path, prefix: str, ignored: list[str]) -> str:
    """One line naming the ignored keys (grouped by module when there are many)."""
    if len(ignored) <= 6:
        names = ", ".join(ignored)
    else:
        loaded = prefix.split(".")[:-1]

        def group(key: str) -> str:  # the key's path down to where it leaves the loaded prefix
            parts, shared = key.split("."), 0
            while shared < min(len(loaded), len(parts) - 1) and parts[shared] == loaded[shared]:
                shared += 1
            return ".".join(parts[: shared + 1])

        names = ", ".join(f"{g}.* ({n})" for g, n in Counter(map(group, ignored)).items())
    where = f"loaded the model from its keys under {prefix!r}; " if prefix else ""
    return f"note: {path}: {where}ignored {len(ignored)} key(s) that are not part of the model: {names}"


def fit_state(state: dict[str, torch.Tensor], model: nn.Module, path: str | Path, hint: str = "",
              optional: Callable[[str], bool] | None = None) -> dict[str, torch.Tensor]:
    """The part of checkpoint `state` that is `model`'s weights, keyed like `model.state_dict()`.

    The model's keys are looked for in `state` as they are, or under one prefix (`module.`,
    `backbone.`, `model.backbone.`, ...; torch.compile's `_orig_mod.` is dropped). Extra keys are
    ignored, with a one-line note naming them, only where they cannot be part of the model: keys
    outside that prefix, and keys of modules the model has no weights in (`fc.*` of a torchvision
    classifier when the model's `fc` is the identity, `projection_head.*`). A missing key (other
    than those `optional` accepts, which keep the model's own values), a wrong shape, or an extra
    key inside one of the model's modules is a UserError naming the file and the keys.
    """
    own = model.state_dict()
    required = [k for k in own if not (optional and optional(k))]
    compiled = {_COMPILED.sub("", k): v for k, v in state.items()}
    state = compiled if len(compiled) == len(state) else state
    owned = {k.split(".", 1)[0] for k in own}  # the model's top-level modules that hold weights

    def blocking(rest: str) -> bool:  # an extra key inside one of the model's own modules
        return rest not in own and rest.split(".", 1)[0] in owned

    def fits_model(view: dict[str, str]) -> bool:
        return (all(k in view for k in required) and not any(map(blocking, view))
                and all(state[view[k]].shape == own[k].shape for k in own if k in view))

    if all(k in state for k in required) and all(k in own for k in state):  # the usual case: exact keys
        readings = [("", {k: k for k in state})]
    else:
        readings = _views(state, model, len(required))
    fits = [(prefix, view) for prefix, view in readings if fits_model(view)]
    if not fits:  # report against the reading that matches most of the model's keys
        best = max(_views(state, model, 0), key=lambda pv: sum(k in pv[1] for k in required))
        prefix, view = best
        shown = {k: state[v] for k, v in view.items()}
        if all(k in view for k in required):  # only the model's own problems; heads would be ignored
            shown = {k: v for k, v in shown.items() if k in own or blocking(k)}
        where = f"(compared with its keys under {prefix!r}) " if prefix else ""
        check_fits(shown, {k: v for k, v in own.items() if k in required or k in view}, path,
                   (where + hint).strip())
        raise UserError(f"Checkpoint {path} does not fit the architecture.{' ' + hint if hint else ''}")  # not reached
    if len(fits) > 1:
        def rank(fit):
            words = set(re.split(r"[._]", fit[0].lower()))
            return (bool(words & _AVERAGED_COPY), fit[0].count("."))

        fits.sort(key=rank)
        if rank(fits[0]) == rank(fits[1]):
            tied = [p for p, _ in fits if rank((p, None)) == rank(fits[0])]
            raise UserError(
                f"Checkpoint {path} holds the model's weights more than once (under {', '.join(map(repr, tied))}); "
                f"save the copy to use as a plain state dict, e.g. torch.save({{k.removeprefix({tied[0]!r}): v "
                f"for k, v in sd.items() if k.startswith({tied[0]!r})}}, 'weights.pt')."
            )
    prefix, view = fits[0]
    used = set(view[k] for k in own if k in view)
    ignored = [k for k in state if k not in used]
    if ignored:
        log.warning(_ignored_note(path, prefix, ignored))
    return {k: state[view[k]] if k in view else own[k] for k in own}


def load_into(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a checkpoint into `model` (see `fit_state` for the forms accepted); a mismatch names
    the file and the keys. The model's own tensors are updated in place."""
    state = fit_state(load_state(path), model, path)
    broken = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        raise UserError(f"Checkpoint {path} holds NaN or infinite values in {len(broken)} tensor(s) (e.g. "
                        f"{', '.join(broken[:3])}): the training diverged? Results from it would be NaN.")
    model.load_state_dict(state)
    return model
