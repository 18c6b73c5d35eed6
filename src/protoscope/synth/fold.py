"""Batch norm folded into the convolution before it, in the engine's traced eval-mode forward.

Why: in eval mode a BatchNorm2d is a fixed per-channel affine map, so conv → BN is one
convolution with rescaled weights and a bias. Without bf16 the engine's step is almost all
convolution, and BN with its backward adds 5-20 % to it (`bench/results/engine_profile_*.txt`).
torch's `fuse_conv_bn_eval` returns a copy, which would go stale when the evolve stage loads
the next checkpoint into the same model; here the folded weights are recomputed whenever one
of their source tensors changes (its storage or its version counter), so the traced graph
keeps sharing the model's parameters.
"""

from __future__ import annotations

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights


class FoldedConvBN(nn.Module):
    """`bn(conv(x))` as one convolution while `bn` is in eval mode and nothing needs weight gradients."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d):
        super().__init__()
        self.conv, self.bn = conv, bn
        self._key: tuple | None = None
        self._weight: torch.Tensor | None = None
        self._bias: torch.Tensor | None = None

    def _sources(self) -> list[torch.Tensor]:
        bn = self.bn
        return [t for t in (self.conv.weight, self.conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var)
                if t is not None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn.training or any(t.requires_grad for t in self._sources()):
            return self.bn(self.conv(x))
        return self.conv._conv_forward(x, *self._folded())

    def _folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in self._sources())
        if key != self._key:
            self._weight, self._bias = self._fold()
            self._key = key
        return self._weight, self._bias

    @torch.no_grad()
    def _fold(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The folded weight and bias, computed in float32, then in the conv's dtype and layout."""
        conv, bn = self.conv, self.bn
        f32 = lambda t: None if t is None else t.float()  # noqa: E731
        weight, bias = fuse_conv_bn_weights(f32(conv.weight), f32(conv.bias), bn.running_mean.float(),
                                            bn.running_var.float(), bn.eps, f32(bn.weight), f32(bn.bias))
        layout = (torch.channels_last if conv.weight.is_contiguous(memory_format=torch.channels_last)
                  and not conv.weight.is_contiguous() else torch.contiguous_format)
        return (weight.detach().to(conv.weight.dtype).contiguous(memory_format=layout),
                bias.detach().to(conv.weight.dtype))


def _foldable(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """A BatchNorm2d call on the lone output of a Conv2d call, with running statistics to fold."""
    if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
        return False
    source = node.args[0] if len(node.args) == 1 and not node.kwargs else None
    bn = modules[node.target]
    return (isinstance(source, fx.Node) and source.op == "call_module" and len(source.users) == 1
            and type(modules.get(source.target)) is nn.Conv2d and bn.running_mean is not None)


def fold_batchnorm(graph_module: fx.GraphModule) -> int:
    """Replace every conv → BN pair of a traced graph by a `FoldedConvBN`; returns how many."""
    modules = dict(graph_module.named_modules())
    folded = 0
    for node in list(graph_module.graph.nodes):
        if not _foldable(node, modules):
            continue
        conv_node = node.args[0]
        name = f"folded_{folded}_{conv_node.target.replace('.', '_')}"
        module = FoldedConvBN(modules[conv_node.target], modules[node.target])
        module.training = module.bn.training  # not `train()`: that would set the shared conv and BN too
        graph_module.add_submodule(name, module)
        with graph_module.graph.inserting_after(node):
            replacement = graph_module.graph.call_module(name, conv_node.args, conv_node.kwargs)
        node.replace_all_uses_with(replacement)
        graph_module.graph.erase_node(node)
        graph_module.graph.erase_node(conv_node)
        folded += 1
    if folded:
        graph_module.graph.lint()
        graph_module.recompile()
    return folded
