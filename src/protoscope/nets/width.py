"""Width families for the width study: networks that differ in width and nothing that matters more.

- `fc_family`: fully connected nets at about the same parameter count, the depth growing as the
  width shrinks (the seed's translated-MNIST setting), so a wider net is not simply a bigger one;
- `conv_family`: a small convolutional trunk whose penultimate (feature) width varies.

Every net returns logits, and `features(net, x)` its penultimate activations: what the frozen net
offers a linear classifier on a new task.
"""

from __future__ import annotations

import torch
from torch import nn


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def fc_parameters(inputs: int, width: int, depth: int, classes: int) -> int:
    """Weights and biases of `depth` hidden layers of `width` units between `inputs` and `classes`."""
    return inputs * width + width + (depth - 1) * (width * width + width) + width * classes + classes


def fc_depth(inputs: int, width: int, classes: int, budget: int, max_depth: int | None = None) -> int:
    """The depth (1 ..= `max_depth`) whose parameter count comes closest to `budget` at this width.

    Without a cap, narrow widths make nets too deep for plain SGD to train (width 32 on 16×16 inputs at
    60,000 parameters: depth 50); capped nets have fewer parameters than the budget."""
    per_layer = width * width + width
    first = fc_parameters(inputs, width, 1, classes)
    depth = max(1, 1 + round((budget - first) / per_layer))
    return depth if max_depth is None else min(depth, max_depth)


class FCNet(nn.Module):
    def __init__(self, inputs: int, width: int, depth: int, classes: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        for k in range(depth):
            layers += [nn.Linear(inputs if k == 0 else width, width), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, classes)
        self.width, self.depth = width, depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class ConvNet(nn.Module):
    """conv 3×3 (16) → pool → conv 3×3 (32) → mean to 4×4 → linear (`width`) → ReLU → linear (classes).

    The 4×4 map keeps where things are (a global mean would erase the shift the original task asks for)."""

    def __init__(self, channels: int, width: int, classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(32 * 16, width), nn.ReLU(),
        )
        self.head = nn.Linear(width, classes)
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def fc_family(inputs: int, classes: int, widths: list[int], budget: int,
              max_depth: int | None = None) -> dict[int, FCNet]:
    return {w: FCNet(inputs, w, fc_depth(inputs, w, classes, budget, max_depth), classes) for w in widths}


def conv_family(channels: int, classes: int, widths: list[int]) -> dict[int, ConvNet]:
    return {w: ConvNet(channels, w, classes) for w in widths}


@torch.no_grad()
def features(net: nn.Module, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """Penultimate activations (the input of the head), in batches."""
    was = net.training
    net.eval()
    out = torch.cat([net.body(x[i:i + batch]) for i in range(0, len(x), batch)])
    net.train(was)
    return out
