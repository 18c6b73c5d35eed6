"""The width study's measurements: train a net on the original task, freeze it, read a new task linearly.

For each net of a width family: supervised training (cross-entropy, Adam) on the original task;
its accuracy there (its own head, held-out images); then a logistic regression on its frozen
penultimate features for the *new* task (`probe.fit_probes`). The baseline is the same linear
classifier on the raw inputs. Rows go out in the metrics table's long format (`layer` = the
family, `space` = the width).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..nets.onednn import route_around_onednn_bug
from ..nets.width import count_parameters, features
from .probe import fit_probes


def train_supervised(net: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float = 1e-3,
                     batch: int = 128, seed: int = 0) -> float:
    """Cross-entropy with Adam, shuffled mini-batches from `seed`; returns the last epoch's mean loss."""
    route_around_onednn_bug(net, x.device)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    loss_sum = 0.0
    for _ in range(epochs):
        order, loss_sum = torch.randperm(len(x), generator=generator), 0.0
        for start in range(0, len(x), batch):
            rows = order[start:start + batch]
            loss = nn.functional.cross_entropy(net(x[rows]), y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(rows)
    return loss_sum / len(x)


@torch.no_grad()
def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    return float((net(x).argmax(1) == y).float().mean())


def new_task_accuracy(train_x, train_y, test_x, test_y, seed: int = 0) -> float:
    """Test accuracy of a logistic regression (standardized inputs) on the new task."""
    return fit_probes(np.asarray(train_x), train_y, np.asarray(test_x), test_y, ["logreg"], seed=seed)["logreg"]["test"]


def width_rows(family: str, nets: dict[int, nn.Module], task, epochs: int, seed: int = 0) -> list[dict]:
    """Train every net of a family on `task` (a `data.width_tasks.WidthTask`) and measure both tasks."""
    x_train, y_train, x_test, y_test = task.x_train, task.y_train, task.x_test, task.y_test
    new_train, new_test = task.new_train, task.new_test
    rows = []
    for width, net in nets.items():
        torch.manual_seed(seed)
        for module in net.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        train_supervised(net, x_train, y_train, epochs, seed=seed)
        base = {"run": f"{family}-w{width}-s{seed}", "condition": family, "seed": seed, "layer": family,
                "space": str(width)}
        transfer = new_task_accuracy(features(net, x_train), new_train, features(net, x_test), new_test, seed)
        rows += [dict(base, metric="width_original_accuracy", value=accuracy(net, x_test, y_test)),
                 dict(base, metric="width_new_accuracy", value=transfer),
                 dict(base, metric="width_parameters", value=float(count_parameters(net))),
                 dict(base, metric="width_depth", value=float(getattr(net, "depth", 1)))]
    return rows
