"""Pictures of prototypes: grids (the seed's Figure 2) and development strips (Figure 4).

Inputs are uint8 images (N, S, S, 3) as the store keeps them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torchvision.utils import make_grid, save_image

from .figures import save


def grid_image(images: np.ndarray, ncols: int | None = None, pad: int = 2) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> one float image (3, H, W) with a white gap between prototypes."""
    x = torch.as_tensor(np.asarray(images)).permute(0, 3, 1, 2).float() / 255
    ncols = ncols or max(1, math.ceil(math.sqrt(len(x))))
    return make_grid(x, nrow=ncols, padding=pad, pad_value=1.0)


def save_grid(images: np.ndarray, path: Path, ncols: int | None = None, scale: int = 1) -> Path:
    """A PNG grid of prototypes, unit 0 at the top left, row by row."""
    grid = grid_image(images, ncols)
    if scale > 1:
        grid = torch.nn.functional.interpolate(grid[None], scale_factor=scale, mode="nearest")[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, path)
    return path


def layer_grids(panels: dict[str, np.ndarray], path: Path, title: str, max_units: int = 64) -> list[Path]:
    """One panel per condition (or run): the first `max_units` prototypes of a layer."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.3), squeeze=False)
    for ax, (label, images) in zip(axes[0], panels.items()):
        ax.imshow(grid_image(images[:max_units]).permute(1, 2, 0).numpy())
        ax.set_title(label)
        ax.axis("off")
    fig.suptitle(title)
    return save(fig, path)


def development_strip(images: np.ndarray, epochs: list[int], units: list[int], path: Path, title: str,
                      scores: np.ndarray | None = None) -> list[Path]:
    """Rows = units, columns = epochs: how each unit's prototype develops. images: (E, U, S, S, 3).

    Drawn as one montage image with labelled ticks (one imshow, not E x U subplots: fast).
    """
    import matplotlib.pyplot as plt

    n_epochs, n_units, size = images.shape[0], images.shape[1], images.shape[2]
    order = np.asarray(images).transpose(1, 0, 2, 3, 4).reshape(n_epochs * n_units, size, size, 3)
    montage = grid_image(order, ncols=n_epochs, pad=2).permute(1, 2, 0).numpy()
    step = size + 2
    fig, ax = plt.subplots(figsize=(0.6 * n_epochs + 1.5, 0.6 * n_units + 1.0))
    ax.imshow(montage)
    ax.set_xticks([2 + step * j + size / 2 for j in range(n_epochs)], [str(e) for e in epochs], fontsize=7)
    labels = [f"unit {u}" + (f" ({scores[-1, i]:.2g})" if scores is not None else "") for i, u in enumerate(units)]
    ax.set_yticks([2 + step * i + size / 2 for i in range(n_units)], labels, fontsize=7)
    ax.set_xlabel("epoch")
    ax.set_title(title, fontsize=9)
    return save(fig, path)


def most_changing_units(images: np.ndarray, count: int) -> list[int]:
    """Units whose prototype changes most between consecutive epochs (pixel MSE). images: (E, U, S, S, 3)."""
    x = images.astype(np.float32) / 255
    if len(x) < 2:
        return list(range(min(count, x.shape[1])))
    change = ((x[1:] - x[:-1]) ** 2).mean(axis=(2, 3, 4)).sum(axis=0)
    return [int(u) for u in np.argsort(-change)[:count]]


def prototype_figures(study, out: Path, strip_units: int = 8) -> list[Path]:
    """Per layer: a grid per condition at the last epoch, and a development strip of the units that change most."""
    from ..store.arrays import ArrayStore

    store = ArrayStore(Path(study.store) / "arrays.zarr")
    paths: list[Path] = []
    runs = [r for r in study.runs if r.name in store.runs()]
    layers = [layer for layer in study.layers if runs and store.has_layer(runs[0].name, layer)]
    for layer in layers:
        panels = {}
        for run in runs:
            done = store.done_jobs(run.name, layer)
            if run.condition not in panels and done:
                epoch = max(e for e, r in done if r == 0) if any(r == 0 for _, r in done) else max(done)[0]
                panels[f"{run.condition} ({run.name}, epoch {epoch})"] = store.read_job(run.name, layer, epoch, 0)["prototype"]
        if panels:
            paths += layer_grids(panels, out / f"prototypes_{layer}", f"Prototypes of {layer}")
        run = runs[0]
        epochs = sorted(e for e, r in store.done_jobs(run.name, layer) if r == 0)
        if len(epochs) >= 2:
            stack = np.stack([store.read_job(run.name, layer, e, 0)["prototype"] for e in epochs])
            scores = np.stack([store.read_job(run.name, layer, e, 0)["score"] for e in epochs])
            units = most_changing_units(stack, strip_units)
            paths += development_strip(stack[:, units], epochs, units, out / f"development_{layer}",
                                       f"{run.name} {layer}: prototypes over training (final score)", scores[:, units])
    return paths
