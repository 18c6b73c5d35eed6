"""Pictures of prototypes: grids (the seed's Figure 2) and development strips (Figure 4).

Inputs are uint8 images (N, S, S, 3) as the store keeps them.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torchvision.utils import make_grid, save_image

from .figures import save
from .rf_view import seen


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


def development_strips(panels: dict[str, tuple], path: Path, title: str) -> list[Path]:
    """Development strips side by side, one per panel: label -> (images (E, U, S, S, 3), epochs, units, scores).

    Each is drawn as one montage image with labelled ticks (one imshow, not E x U subplots: fast).
    `scores` (E, U) or None: the final epoch's score is printed beside each unit.
    """
    import matplotlib.pyplot as plt

    shapes = [(np.asarray(p[0]).shape[0], np.asarray(p[0]).shape[1]) for p in panels.values()]
    most_epochs, most_units = max(e for e, _ in shapes), max(u for _, u in shapes)
    fig, axes = plt.subplots(1, len(panels), figsize=(len(panels) * (0.6 * most_epochs + 1.5), 0.6 * most_units + 1.0),
                             squeeze=False)
    for ax, (label, (images, epochs, units, scores)) in zip(axes[0], panels.items()):
        images = np.asarray(images)
        n_epochs, n_units, size = images.shape[0], images.shape[1], images.shape[2]
        order = images.transpose(1, 0, 2, 3, 4).reshape(n_epochs * n_units, size, size, 3)
        ax.imshow(grid_image(order, ncols=n_epochs, pad=2).permute(1, 2, 0).numpy())
        step = size + 2
        ax.set_xticks([2 + step * j + size / 2 for j in range(n_epochs)], [str(e) for e in epochs], fontsize=7)
        ticks = [f"unit {u}" + (f" ({scores[-1, i]:.2g})" if scores is not None else "") for i, u in enumerate(units)]
        ax.set_yticks([2 + step * i + size / 2 for i in range(n_units)], ticks, fontsize=7)
        ax.set_xlabel("epoch")
        if label:
            ax.set_title(label, fontsize=9)
    fig.suptitle(title, fontsize=9)
    return save(fig, path)


def most_changing_units(images: np.ndarray, count: int) -> list[int]:
    """Units whose prototype changes most between consecutive epochs (pixel MSE). images: (E, U, S, S, 3)."""
    x = images.astype(np.float32) / 255
    if len(x) < 2:
        return list(range(min(count, x.shape[1])))
    change = ((x[1:] - x[:-1]) ** 2).mean(axis=(2, 3, 4)).sum(axis=0)
    return [int(u) for u in np.argsort(-change)[:count]]


def stored_change(store_root: Path, run: str, layer: str, distances=("mse", "cosine")) -> tuple[np.ndarray, str] | None:
    """Per-unit rate of change summed over epochs (mean over repeats) from ``unit_metrics.zarr``, and the
    space · distance it was measured in (pixel space preferred); None before `analyze` has run."""
    import zarr

    root = Path(store_root) / "unit_metrics.zarr"
    spaces = sorted(p.name for p in root.iterdir() if (p / run / layer / "zarr.json").is_file()) if root.is_dir() else []
    if not spaces:
        return None
    space = "pixel" if "pixel" in spaces else spaces[0]
    group = zarr.open_group(root / space / run / layer, mode="r", zarr_format=3)
    for distance in distances:
        if f"change_{distance}" in group:
            values = np.asarray(group[f"change_{distance}"][:])  # (epoch, repeat, unit)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN units: handled below
                total = np.nansum(np.nanmean(values, axis=1), axis=0)
            total[np.isnan(values).all(axis=(0, 1))] = -np.inf  # never measured (silent): never picked
            return total, f"{space} · {distance}"
    return None


def strip_units(study, run: str, layer: str, stack: np.ndarray, count: int) -> tuple[list[int], str]:
    """The units to show: the study's choice (`analyze.units`), else those that change most."""
    from ..errors import UserError

    n_units = stack.shape[1]
    chosen = study.analyze.units.get(layer)
    if chosen:
        bad = [u for u in chosen if not 0 <= u < n_units]
        if bad:
            raise UserError(f"analyze.units.{layer}: units {bad} do not exist; {layer} has units 0..{n_units - 1}.")
        return list(chosen), "chosen units"
    stored = stored_change(study.store, run, layer, study.analyze.distances)
    if stored is not None and len(stored[0]) == n_units:
        masked = ", masked" if study.analyze.masked else ""
        return [int(u) for u in np.argsort(-stored[0], kind="stable")[:count]], f"most changing ({stored[1]}{masked})"
    return most_changing_units(stack, count), "most changing (pixel MSE)"


def prototype_figures(study, out: Path, strip_units_count: int | None = None) -> list[Path]:
    """Per layer: a grid per condition at the last epoch (Figure 2), and development strips (Figure 4) of
    the first run of each condition — the study's chosen units, or those whose prototype changes most.
    Each prototype is cut to the square its unit sees (`rf_view`), when that is not most of the image."""
    from ..store.arrays import ArrayStore

    count = strip_units_count or study.analyze.strip_units
    store = ArrayStore(Path(study.store) / "arrays.zarr")
    paths: list[Path] = []
    stored_runs = store.runs()
    runs = [r for r in study.runs if r.name in stored_runs]
    first = {}  # condition -> its first run with prototypes
    for run in runs:
        first.setdefault(run.condition, run)
    for layer in study.layers:
        panels, strips, how = {}, {}, set()
        for run in first.values():
            if not store.has_layer(run.name, layer):
                continue
            done = store.done_jobs(run.name, layer)
            if not done:
                continue
            epoch = max(e for e, r in done if r == 0) if any(r == 0 for _, r in done) else max(done)[0]
            masks = [store.read_rf(run.name, layer, e)["rf_mask"] for e in sorted(store.done_rf(run.name, layer))]
            panels[f"{run.condition} ({run.name}, epoch {epoch})"] = seen(
                store.read_job(run.name, layer, epoch, 0)["prototype"], masks)
            epochs = sorted(e for e, r in done if r == 0)
            if len(epochs) >= 2:
                jobs = [store.read_job(run.name, layer, e, 0) for e in epochs]
                stack = np.stack([seen(j["prototype"], masks) for j in jobs])
                scores = np.stack([j["score"] for j in jobs])
                units, picked = strip_units(study, run.name, layer, stack, count)
                strips[f"{run.condition} ({run.name})"] = (stack[:, units], epochs, units, scores[:, units])
                how.add(picked)
        if panels:
            paths += layer_grids(panels, out / f"prototypes_{layer}", f"Prototypes of {layer}")
        if strips:
            paths += development_strips(strips, out / f"development_{layer}",
                                        f"{layer}: prototypes over training, repeat 0; {'; '.join(sorted(how))} "
                                        "(final score in brackets)")
    return paths
