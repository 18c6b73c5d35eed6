"""Layer addresses and forward passes truncated at a layer.

An address is a module name as the model names it (`layer3`, `layer3.1.conv2`,
`features.8`) or a node name of its traced graph. The truncated forward pass is
torchvision's feature extractor, which drops every operation the requested
outputs do not need — early layers cost only what they compute.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

from ..errors import UserError, did_you_mean


def layer_names(model: nn.Module) -> list[str]:
    """Every valid address: module names first (in model order), then graph nodes."""
    modules = [name for name, _ in model.named_modules() if name]
    _, eval_nodes = get_graph_node_names(model)
    seen = set(modules)
    return modules + [n for n in eval_nodes if n not in seen and n not in ("x",)]


def major_layers(model: nn.Module) -> list[str]:
    """The top-level children: the addresses users mean most of the time."""
    return [name for name, _ in model.named_children()]


def check_layers(model: nn.Module, layers) -> list[str]:
    """Return `layers` as a list, or raise a UserError listing the valid names."""
    layers = [layers] if isinstance(layers, str) else list(layers)
    valid = layer_names(model)
    valid_set = set(valid)
    for layer in layers:
        if layer not in valid_set:
            top = major_layers(model)
            raise UserError(
                f"Unknown layer {layer!r} for {type(model).__name__}.{did_you_mean(layer, top + [v for v in valid if v not in top])}"
            )
    return layers


class Truncated(nn.Module):
    """`model` cut after the given layers; returns {layer: activation}."""

    def __init__(self, model: nn.Module, layers):
        super().__init__()
        self.layers = check_layers(model, layers)
        was_training = model.training
        model.eval()  # trace the inference graph (BatchNorm in eval mode)
        self.body = create_feature_extractor(model, return_nodes={name: name for name in self.layers})
        model.train(was_training)
        self.body.eval()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.body(x)


def truncate(model: nn.Module, layers) -> Truncated:
    """A module computing only what the requested layers need."""
    return Truncated(model, layers)


@torch.no_grad()
def activations(model: nn.Module, layer: str, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Activations of one layer for a float image tensor, in batches."""
    net = truncate(model, layer)
    outs = [net(images[i : i + batch_size])[layer] for i in range(0, len(images), batch_size)]
    return torch.cat(outs)


__all__ = ["layer_names", "major_layers", "check_layers", "truncate", "Truncated", "activations", "lru_cache"]
