"""Your own training loop, watched by protoscope while it trains.

A small ResNet-18 learns the built-in shapes (plain supervised training, no protoscope in the
loop but `protoscope.Checkpointer`), saving its backbone after every epoch. Run it beside
`protoscope watch`, which probes and synthesizes prototypes for each epoch as it lands:

    python examples/watch_own_loop.py examples/output/own_loop/run     # one shell
    protoscope watch examples/watch_own_loop.yaml                     # another

`examples/watch_own_loop.yaml` names the folder as the run's `path:`. tests/test_watch.py drives
both processes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

import protoscope
from protoscope.data import shapes
from protoscope.data.datasets import normalize
from protoscope.nets.models import build_model


def train(folder: Path, epochs: int = 3, size: int = 16, batch: int = 32) -> None:
    torch.manual_seed(0)
    backbone = build_model("resnet18", width=0.0625, small_input=True)  # what the study's run names
    head = nn.Linear(backbone(torch.zeros(1, 3, size, size)).shape[1], len(shapes.CLASSES))
    images, labels = shapes.labelled_set(256, seed=0, size=size)
    optimizer = torch.optim.SGD([*backbone.parameters(), *head.parameters()], lr=0.05, momentum=0.9)
    ckpt = protoscope.Checkpointer(folder, backbone, epochs=epochs)  # says which epochs will come
    ckpt.save(0)  # the initialization
    for epoch in range(1, epochs + 1):
        backbone.train()
        for start in range(0, len(labels), batch):
            x = normalize(images[start:start + batch].float() / 255)
            loss = nn.functional.cross_entropy(head(backbone(x)), labels[start:start + batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        backbone.eval()
        ckpt.save(epoch)
        print(f"epoch {epoch}: loss {loss.item():.3f}", flush=True)
    ckpt.finish()


if __name__ == "__main__":
    train(Path(sys.argv[1] if len(sys.argv) > 1 else "examples/output/own_loop/run"))
