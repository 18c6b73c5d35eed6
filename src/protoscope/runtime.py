"""Device and precision choices, made once and passed down (no global state)."""

from __future__ import annotations

import contextlib

import torch

from .errors import UserError


def resolve_device(name: str = "auto", here: bool = True) -> torch.device:
    """`auto` picks the GPU when there is one; anything else must exist here (with `here` False, only
    the name is checked: a driver whose jobs run on other machines)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"Unknown device {name!r}; use auto, cpu, cuda or cuda:N.") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"Unknown device {name!r}; use auto, cpu, cuda or cuda:N.")
    if not here:
        return device
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"Device {name!r} requested but no CUDA GPU is available; use --device cpu or auto.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"Device {name!r} requested but this machine has {torch.cuda.device_count()} CUDA GPU(s) "
                        f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1}).")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"Device {name!r} requested but Apple's MPS is not available here; use --device cpu or auto.")
    return device


def bf16_native(device: torch.device) -> bool:
    """Whether bfloat16 matrix work is done in hardware (not emulated) on `device`."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def use_bf16(device: torch.device, precision: str) -> bool:
    if precision == "auto":
        return bf16_native(device)
    if precision in ("bf16", "bfloat16"):
        return True
    if precision in ("float32", "fp32"):
        return False
    raise UserError(f"Unknown precision {precision!r}; use auto, bf16 or float32.")


def autocast(device: torch.device, enabled: bool):
    """bfloat16 autocast when enabled; a no-op context otherwise."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
