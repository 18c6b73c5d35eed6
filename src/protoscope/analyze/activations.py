"""Activations of a fixed, labelled stimulus set: the stimulus set itself and the truncated forward pass.

RSA, alignment and atlases all start from the same numbers (what each unit of a layer answers to
each stimulus image at each epoch), so the activations stage computes them once per (run, layer,
epoch) and stores them (`store.activations`, which documents the layout). A conv layer's unit is a
channel averaged over space (``features: mean``, the default) or one (channel, y, x) position
(``features: flatten``).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from ..data.datasets import Labelled, labelled, normalize
from ..errors import UserError
from ..nets.layers import Truncated, truncate


# --------------------------------------------------------------------------- stimulus set and forward pass


def stimulus_set(study) -> Labelled:
    """The study's labelled stimulus images: `rsa.images` of `rsa.data` (default: the first run's data).

    One set for every run, so representations compare across runs as well as epochs.
    """
    spec = study.rsa.data or study.runs[0].data
    key = (spec.model_dump_json(), study.rsa.images)
    if key not in _PROBES:  # cached per process: a pure function of the data spec
        _PROBES.clear()
        _PROBES[key] = labelled(spec, "probe", study.rsa.images)
    return _PROBES[key]


_PROBES: dict = {}


@torch.no_grad()
def stream_activations(model: nn.Module, layers, images: torch.Tensor, *, device, batch_size: int = 256,
                       pool: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Per batch of uint8 images (N, 3, S, S): {layer: float32 activations} from one truncated forward pass.

    Conv outputs are averaged over space when `pool` ((B, C)), raw otherwise ((B, C, H, W)).
    Tensors stay on `device`; the model is put in eval mode there.
    """
    device = torch.device(device)
    layers = [layers] if isinstance(layers, str) else list(layers)
    yield from _stream(truncate(model.to(device).eval(), layers).to(device), layers, images, device, batch_size, pool)


@torch.no_grad()
def _stream(net: nn.Module, layers: list[str], images: torch.Tensor, device: torch.device, batch_size: int,
            pool: bool) -> Iterator[dict[str, torch.Tensor]]:
    for start in range(0, len(images), batch_size):
        out = net(normalize(images[start : start + batch_size].to(device)))
        batch = {}
        for layer in layers:
            a = out[layer].float()
            batch[layer] = a.mean(dim=tuple(range(2, a.ndim))) if pool and a.ndim > 2 else a
        yield batch


def layer_activations(model: nn.Module, layers, images: torch.Tensor, *, device, batch_size: int = 256,
                      features: str = "mean") -> dict[str, torch.Tensor]:
    """{layer: (N, units) float32 on `device`}: spatial means (`mean`) or flattened maps (`flatten`)."""
    if features not in ("mean", "flatten"):
        raise UserError(f"Unknown features {features!r}; valid: mean, flatten")
    device = torch.device(device)
    layers = [layers] if isinstance(layers, str) else list(layers)
    # `model` may already be truncated (a run's checkpoints reuse one traced graph: tracing costs a forward pass)
    net = model if isinstance(model, Truncated) else truncate(model.to(device).eval(), layers).to(device)
    parts: dict[str, list[torch.Tensor]] = {}
    for batch in _stream(net, layers, images, device, batch_size, features == "mean"):
        for layer, a in batch.items():
            parts.setdefault(layer, []).append(a.flatten(1))
    return {layer: torch.cat(chunks) for layer, chunks in parts.items()}
