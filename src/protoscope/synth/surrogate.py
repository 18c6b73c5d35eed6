"""A positive stand-in for a network, whose gradient support is exactly the theoretical receptive field.

The real network's gradient can vanish (an off ReLU, a max-pool's losing inputs)
or cancel (weights of both signs), so its support depends on the input and the
weights. Replacing every weight by a positive number and every gradient-gating
op by one that passes gradient everywhere leaves only the wiring, which is what
crop planning (`crop.py`) needs to know.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from ..errors import UserError


class _WindowSum(nn.Module):
    """Stand-in for a max-pool: averages the window, so every window element gets gradient.

    A max-pool passes gradient to one arg-max only, which would make the
    gradient's support depend on the input; its *structural* dependency is the
    whole window, which is what an average over the same window has.
    """

    def __init__(self, pool: nn.MaxPool2d):
        super().__init__()
        self.kernel_size, self.stride, self.padding = pool.kernel_size, pool.stride, pool.padding
        self.dilation, self.ceil_mode = pool.dilation, pool.ceil_mode

    def forward(self, x: Tensor) -> Tensor:
        dil = self.dilation if isinstance(self.dilation, tuple) else (self.dilation,) * 2
        if dil == (1, 1):
            return nn.functional.avg_pool2d(
                x, self.kernel_size, self.stride, self.padding, self.ceil_mode, count_include_pad=False
            )
        if self.ceil_mode:
            raise UserError("Receptive fields of dilated max-pools with ceil_mode=True are not supported.")
        n, c, h, w = x.shape
        cols = nn.functional.unfold(x, self.kernel_size, dil, self.padding, self.stride)
        k = cols.shape[1] // c
        out = cols.view(n, c, k, -1).mean(2)
        kh, kw = (self.kernel_size,) * 2 if isinstance(self.kernel_size, int) else self.kernel_size
        sh, sw = (self.stride,) * 2 if isinstance(self.stride, int) else self.stride
        ph, pw = (self.padding,) * 2 if isinstance(self.padding, int) else self.padding
        oh = (h + 2 * ph - dil[0] * (kh - 1) - 1) // sh + 1
        ow = (w + 2 * pw - dil[1] * (kw - 1) - 1) // sw + 1
        return out.view(n, c, oh, ow)


def _set_child(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def _positive(shape, fan_in: int, generator: torch.Generator, scale: float = 1.0) -> Tensor:
    return scale * (0.5 + torch.rand(shape, generator=generator, dtype=torch.float64)) / max(1, fan_in)


class _CollapsedConv(nn.Module):
    """A conv with its channels summed away: same kernel, stride, padding and dilation, one channel.

    Every channel of a CNN feature map has the same spatial dependency set (a
    conv's window is the same for all its channels), so for the *support*
    only the spatial geometry matters; one channel makes the surrogate
    hundreds of times cheaper than the real net.
    """

    def __init__(self, conv: _ConvNd, generator: torch.Generator):
        super().__init__()
        if conv.transposed:
            raise TypeError("transposed convolutions are not collapsed")
        cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[len(conv.kernel_size)]
        self.conv = cls(
            1, 1, conv.kernel_size, conv.stride, conv.padding, conv.dilation, 1, True, conv.padding_mode,
            dtype=torch.float64,
        ).requires_grad_(False)
        with torch.no_grad():
            w = self.conv.weight
            w.copy_(_positive(w.shape, w[0].numel(), generator))
            self.conv.bias.copy_(_positive(1, 1, generator, 0.01))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x.sum(1, keepdim=True))


class _CollapsedLinear(nn.Module):
    """A linear layer acting on a summed last dimension (see `_CollapsedConv`)."""

    def __init__(self, generator: torch.Generator):
        super().__init__()
        self.register_buffer("w", _positive(1, 1, generator))

    def forward(self, x: Tensor) -> Tensor:
        return x.sum(-1, keepdim=True) * self.w + 0.01


def _with_positive_weights(mod: nn.Module, generator: torch.Generator) -> nn.Module:
    """A shallow copy of a conv/linear with fresh positive float64 weight and bias."""
    new = copy.copy(mod)
    new.__dict__ = dict(mod.__dict__)
    new._parameters = dict(mod._parameters)
    w = mod.weight
    new.weight = nn.Parameter(_positive(w.shape, w[0].numel(), generator), requires_grad=False)
    if getattr(mod, "bias", None) is not None:
        new.bias = nn.Parameter(_positive(mod.bias.shape, 1, generator, 0.01), requires_grad=False)
    return new


@torch.no_grad()
def _positive_surrogate(model: nn.Module, generator: torch.Generator, collapse: bool = True) -> nn.Module:
    """A float64 CPU copy of `model` in which no gradient can vanish or cancel.

    Every conv/linear weight and bias is a random *positive* number (scaled by
    1/fan-in so activations stay O(1)), BatchNorm, LayerNorm and GroupNorm become the identity,
    max-pools become window averages and clamping activations (ReLU6,
    Hardtanh) the identity.  Fed a positive input, every activation is then
    positive, no ReLU is off, and every path from a pixel to a unit carries a
    positive product of weights: the support of the gradient is exactly the
    structural dependency set, i.e. the theoretical receptive field.  Random
    (rather than constant) weights also make this copy a sharp test of a crop:
    any misaligned window changes the value.  With `collapse`, convs and
    linears keep one channel (`_CollapsedConv`); callers fall back to
    `collapse=False` for graphs that hard-code channel counts.
    """
    own = {id(t) for t in list(model.parameters()) + list(model.buffers())}
    # Share (do not copy) the real tensors: the modules holding them are replaced below.
    memo = {i: t for t in list(model.parameters()) + list(model.buffers()) for i in [id(t)]}
    m = copy.deepcopy(model, memo)
    for name, mod in list(m.named_modules()):
        if not name:
            continue
        if isinstance(mod, (_ConvNd, nn.Linear)):
            if collapse:
                _set_child(m, name, _CollapsedConv(mod, generator) if isinstance(mod, _ConvNd) else _CollapsedLinear(generator))
            else:
                _set_child(m, name, _with_positive_weights(mod, generator))
        elif isinstance(mod, (_BatchNorm, nn.LayerNorm, nn.GroupNorm)):
            # identity: a norm over channels subtracts their mean, so the sum over channels that
            # the support is read from would be constant; its dependency set is the input's anyway
            _set_child(m, name, nn.Identity())
        elif isinstance(mod, nn.MaxPool2d):
            _set_child(m, name, _WindowSum(mod))
        elif isinstance(mod, nn.AdaptiveMaxPool2d):
            _set_child(m, name, nn.AdaptiveAvgPool2d(mod.output_size))
        elif isinstance(mod, nn.Hardtanh):  # includes ReLU6: saturation would zero gradients
            _set_child(m, name, nn.Identity())
    # Whatever real tensor is left (a LayerNorm's affine, a PReLU slope) gets a float64 copy of its own.
    for mod in m.modules():
        for store in (mod._parameters, mod._buffers):
            for key, t in store.items():
                if t is not None and id(t) in own:
                    c = t.detach().to("cpu").clone()
                    c = c.double() if c.is_floating_point() else c
                    store[key] = nn.Parameter(c, requires_grad=False) if isinstance(t, nn.Parameter) else c
    return m.eval()
