"""Layer addresses and forward passes truncated at a layer, for any model.

An address is a module name as the model names it (`layer3`, `layer3.1.conv2`, `features.8`), a
node of its traced graph (`layer3.1.add`), or a module name with a selector: `blocks.3[0]`, one
element of a module that returns a tuple, and `encoder.layers.encoder_layer_5[cls]`, a token
layer's class token (its other tokens are the patch grid).

The truncated forward pass is torchvision's feature extractor (torch.fx) where the model traces:
it drops every operation the requested outputs do not need. Where tracing fails (a data-dependent
`if`, a `forward` with extra arguments, an assertion on the input), it is the model's own forward
with hooks on the requested modules, stopped by an exception as soon as the last one has
answered, so nothing after it is computed either. Every output leaves units first
(`protoscope.nets.units`).
"""

from __future__ import annotations

import contextlib
import io
import re

import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

from ..errors import UserError, did_you_mean
from .units import LAYOUTS, Layout, find_layout, model_hint

_ADDRESS = re.compile(r"^(?P<base>[^\[\]]+)(?:\[(?P<select>\d+|cls)\])?$")


def split_address(address: str) -> tuple[str, str | None]:
    """(module or node name, selector: an element index, "cls" or None)."""
    match = _ADDRESS.match(address)
    if not match:
        raise UserError(f"Layer address {address!r} is not a module name, optionally followed by [<index>] (one "
                        "element of a tuple output) or [cls] (a token layer's class token).")
    return match["base"], match["select"]


def graph_nodes(model: nn.Module) -> list[str]:
    """The traced graph's node names, or [] when the model does not trace (hooks serve it then)."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # torch.fx prints failing traces
            return get_graph_node_names(model)[1]
    except Exception:  # noqa: BLE001 - any failure to trace means: no graph-node addresses
        return []


def layer_names(model: nn.Module) -> list[str]:
    """Every valid address: module names first (in model order), then graph nodes."""
    modules = [name for name, _ in model.named_modules() if name]
    seen = set(modules)
    return modules + [n for n in graph_nodes(model) if n not in seen and n not in ("x",)]


def major_layers(model: nn.Module) -> list[str]:
    """The top-level children: the addresses users mean most of the time."""
    return [name for name, _ in model.named_children()]


def check_layers(model: nn.Module, layers) -> list[str]:
    """Return `layers` as a list, or raise a UserError listing the valid names. Module names are
    checked against `named_modules()` alone; the graph is traced only for a name that is no module."""
    layers = [layers] if isinstance(layers, str) else list(layers)
    modules = {name for name, _ in model.named_modules() if name}
    for layer in layers:
        base, _ = split_address(layer)
        if base in modules:
            continue
        valid = layer_names(model)
        if base not in valid:
            top = major_layers(model)
            raise UserError(
                f"Unknown layer {layer!r} for {type(model).__name__}.{did_you_mean(base, top + [v for v in valid if v not in top])}"
            )
    return layers


# What `declare` said, kept on the model object itself so that copies of it (the receptive field's
# surrogate, a worker's unpickled model) carry it too; a plain attribute, outside the state dict.
_DECLARED = "_protoscope_declared"


def declare(model: nn.Module, layouts: dict[str, str] | None = None, forward_kwargs: dict | None = None) -> nn.Module:
    """Tell protoscope what it cannot find out about `model`: the raw layout of some layers
    ({"blocks.3": "NHWC"}) and the extra arguments its forward needs. Every method run on this
    model object afterwards (the API calls, the stages' truncated passes) reads them; returns `model`."""
    wrong = {layer: kind for layer, kind in (layouts or {}).items() if kind not in LAYOUTS}
    if wrong:
        layer, kind = next(iter(wrong.items()))
        raise UserError(f"Unknown layout {kind!r} for layer {layer!r}; valid: {', '.join(LAYOUTS)}.")
    check_layers(model, list(layouts or {}))
    setattr(model, _DECLARED, {"layouts": dict(layouts or {}), "forward_kwargs": dict(forward_kwargs or {})})
    return model


class _Answered(Exception):
    """Raised by the last hook: every requested module has answered, the rest of the pass is skipped."""


class Truncated(nn.Module):
    """`model` cut after the given layers; returns {layer: activation, units first}.

    `layouts` declares a layer's raw layout where it cannot be found (`protoscope.nets.units`);
    `forward_kwargs` are passed to the model's forward (the hooked pass: tracing takes none).
    """

    def __init__(self, model: nn.Module, layers, layouts: dict[str, str] | None = None,
                 forward_kwargs: dict | None = None):
        super().__init__()
        self.layers = check_layers(model, layers)
        told = getattr(model, _DECLARED, {})
        self.declared = {**told.get("layouts", {}), **(layouts or {})}
        self.forward_kwargs = {**told.get("forward_kwargs", {}), **(forward_kwargs or {})}
        self.hint = model_hint(model)
        self.found: dict[str, Layout] = {}
        bases = list(dict.fromkeys(split_address(layer)[0] for layer in self.layers))
        self.body = None if self.forward_kwargs else _traced(model, bases)
        if self.body is None:
            modules = {name for name, _ in model.named_modules() if name}
            untraceable = [base for base in bases if base not in modules]
            if untraceable:
                raise UserError(f"{type(model).__name__} does not trace (torch.fx), so graph nodes like "
                                f"{untraceable[0]!r} cannot be read; name a module instead.")
            self.model = model
        self.bases = bases

    def raw(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """{address: the layer's output as the model computes it} (a selected element or token)."""
        outputs = self.body(x) if self.body is not None else _hooked(self.model, self.bases, x, self.forward_kwargs)
        return {layer: _select(layer, outputs[split_address(layer)[0]]) for layer in self.layers}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raw = self.raw(x)
        image = (x.shape[-2], x.shape[-1])
        if len(self.found) < len(self.layers):
            self._find_layouts(x, raw)
        return {layer: self.found[layer].units_first(a, layer, image) for layer, a in raw.items()}

    def _find_layouts(self, x: torch.Tensor, raw: dict[str, torch.Tensor]) -> None:
        """Each layer's layout, from its output at this input size and at twice it (see units.py)."""
        other = _shapes_at(self, x[:1], (2 * x.shape[-2], 2 * x.shape[-1])) if any(
            layer not in self.declared and raw[layer].ndim in (3, 4) for layer in self.layers) else {}
        for layer, a in raw.items():
            self.found[layer] = find_layout(layer, tuple(a.shape), other.get(layer), (x.shape[-2], x.shape[-1]),
                                            self.hint, self.declared.get(layer))


def _traced(model: nn.Module, bases: list[str]):
    """torchvision's feature extractor for `bases`, or None where the model does not trace."""
    was_training = model.training
    model.eval()  # trace the inference graph (BatchNorm in eval mode)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            body = create_feature_extractor(model, return_nodes={name: name for name in bases})
    except Exception:  # noqa: BLE001 - TraceError, TypeError, an assertion: the hooked pass serves instead
        return None
    finally:
        model.train(was_training)
    return body.eval()


def _hooked(model: nn.Module, bases: list[str], x: torch.Tensor, kwargs: dict) -> dict:
    """The model's own forward, each requested module's output kept by a hook, stopped after the last."""
    outputs: dict = {}

    def keep(name):
        def hook(_module, _args, output):
            outputs.setdefault(name, output)  # a module called twice: its first call
            if len(outputs) == len(bases):
                raise _Answered

        return hook

    handles = [model.get_submodule(name).register_forward_hook(keep(name)) for name in bases]
    try:
        model(x, **kwargs)
    except _Answered:
        pass
    except TypeError as exc:
        if outputs.keys() != set(bases) and "argument" in str(exc):
            raise UserError(f"{type(model).__name__}.forward needs more than the images ({exc}); pass the rest as "
                            "forward_kwargs.") from None
        raise
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for name in bases if name not in outputs]
    if missing:
        raise UserError(f"Layer {missing[0]!r} of {type(model).__name__} is never called by its forward pass.")
    return outputs


def _select(layer: str, output):
    """The tensor an address names in a module's output: the output, one element, or the class token."""
    _, select = split_address(layer)
    if select is not None and select != "cls":
        if not isinstance(output, (tuple, list)) or int(select) >= len(output):
            raise UserError(f"Layer {layer!r}: the module returns {_kind(output)}, which has no element {select}.")
        output = output[int(select)]
    if isinstance(output, (tuple, list)):
        raise UserError(f"Layer {layer!r} returns a {type(output).__name__} of {len(output)}; name one element, "
                        f"e.g. {layer}[0].")
    if not isinstance(output, torch.Tensor):
        raise UserError(f"Layer {layer!r} returns {_kind(output)}, not a tensor; choose another layer.")
    if select == "cls":
        if output.ndim != 3:
            raise UserError(f"Layer {layer!r}: [cls] names a token layer's class token, but the output is "
                            f"{tuple(output.shape)}, not (batch, tokens, features).")
        output = output[:, 0]
    return output


def _kind(output) -> str:
    return f"a {type(output).__name__} of {len(output)}" if isinstance(output, (tuple, list)) else type(output).__name__


@torch.no_grad()
def _shapes_at(net: Truncated, x: torch.Tensor, size: tuple[int, int]) -> dict[str, tuple[int, ...]]:
    """Each layer's raw output shape for one image resized to `size`; {} where the model takes one size only."""
    modules = [m for m in net.modules() if m is not net]
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()  # BatchNorm's running statistics must not see this pass
    try:
        bigger = nn.functional.interpolate(x.detach(), size=size, mode="nearest")
        return {layer: tuple(a.shape) for layer, a in net.raw(bigger).items()}
    except Exception:  # noqa: BLE001 - a ViT's size assertion, a fixed positional embedding
        return {}
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


def truncate(model: nn.Module, layers, layouts: dict[str, str] | None = None,
             forward_kwargs: dict | None = None) -> Truncated:
    """A module computing only what the requested layers need, each output units first."""
    return Truncated(model, layers, layouts, forward_kwargs)


@torch.no_grad()
def activations(model: nn.Module, layer: str, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Activations of one layer for a float image tensor, in batches."""
    net = truncate(model, layer)
    outs = [net(images[i : i + batch_size])[layer] for i in range(0, len(images), batch_size)]
    return torch.cat(outs)


__all__ = ["layer_names", "major_layers", "check_layers", "declare", "split_address", "truncate", "Truncated",
           "activations"]
