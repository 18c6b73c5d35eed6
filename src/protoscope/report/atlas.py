"""Atlas figures: the map coloured by class, the atlas over training with its density, single units
beside it (the seed's Figures 1–3), and one PNG per epoch (an animation-ready strip)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr
from PIL import Image

from .figures import plt, save


def mosaic(icons: np.ndarray, counts: np.ndarray, grid: int, min_count: int, pad: int = 1) -> np.ndarray:
    """(cells, S, S, 3) icons -> one (g·(S+pad), g·(S+pad), 3) image, row 0 at the top of the map
    (largest y); empty cells white."""
    size = icons.shape[1]
    step = size + pad
    out = np.full((grid * step, grid * step, 3), 255, np.uint8)
    for cell in np.flatnonzero(counts >= min_count):
        row, column = divmod(int(cell), grid)
        top = (grid - 1 - row) * step
        out[top:top + size, column * step:column * step + size] = icons[cell]
    return out


def _groups(store: Path):
    root = store / "atlas.zarr" / "runs"
    if not root.is_dir():
        return
    for run in sorted(p.name for p in root.iterdir() if p.is_dir()):
        for layer in sorted(p.name for p in (root / run).iterdir() if (p / "done" / "zarr.json").is_file()):
            yield run, layer, zarr.open_group(root / run / layer, mode="r", zarr_format=3)


def atlas_figures(study, out: Path) -> list[Path]:
    """Every stored atlas: the strip, the atlas over training, and the map with single units; runs that
    share a map side by side."""
    paths: list[Path] = []
    shared: dict[tuple, dict] = {}
    for run, layer, group in _groups(Path(study.store)):
        done = np.asarray(group["done"][:])
        if not done.any():
            continue
        epochs = [int(e) for e, d in zip(group["epoch"][:], done) if d]
        index = {int(e): i for i, e in enumerate(group["epoch"][:])}
        settings = group.attrs["settings"]
        grid, min_count = settings["grid"], settings["min_count"]
        images = {e: mosaic(np.asarray(group["icon"][index[e]]), np.asarray(group["count"][index[e]]), grid, min_count)
                  for e in epochs}
        for epoch, image in images.items():
            path = out / "atlas" / run / layer / f"epoch_{epoch:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).resize((image.shape[1] * 2, image.shape[0] * 2), Image.NEAREST).save(path)
            paths.append(path)
        counts = {e: np.asarray(group["count"][index[e]]).reshape(grid, grid) for e in epochs}
        paths += _over_training(images, counts, run, layer, out / f"atlas_{run}_{layer}")
        paths += _map_and_units(study, group, run, layer, epochs[-1], index[epochs[-1]], images[epochs[-1]],
                                out / f"atlas_map_{run}_{layer}")
        together = tuple(group.attrs.get("map_runs", [run]))
        if len(together) > 1:
            shared.setdefault((together, layer), {})[run] = (images, counts)
    for (together, layer), per_run in shared.items():
        if len(per_run) == len(together):
            paths += _runs_on_one_map(per_run, layer, out / f"atlas_{'+'.join(together)}_{layer}")
    return paths


def _runs_on_one_map(per_run: dict, layer: str, path: Path) -> list[Path]:
    """Runs fitted on one map, one pair of rows each (atlas, density), the same epochs in columns."""
    epochs = sorted(set.intersection(*(set(images) for images, _ in per_run.values())))
    shown = _shown(epochs)
    fig, axes = plt.subplots(2 * len(per_run), len(shown), figsize=(3 * len(shown), 6 * len(per_run)), squeeze=False)
    top = max(c.max() for _, counts in per_run.values() for c in counts.values())
    for r, (run, (images, counts)) in enumerate(per_run.items()):
        for k, epoch in enumerate(shown):
            axes[2 * r, k].imshow(images[epoch])
            axes[2 * r, k].set_title(f"{run}, epoch {epoch}")
            axes[2 * r + 1, k].imshow(counts[epoch], origin="lower", cmap="magma", vmin=0, vmax=top)
            axes[2 * r + 1, k].set_title("activations per cell", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"{layer}: {' and '.join(per_run)} on one shared map")
    return save(fig, path)


def _shown(epochs: list[int], most: int = 5) -> list[int]:
    if len(epochs) <= most:
        return epochs
    picks = np.linspace(0, len(epochs) - 1, most).round().astype(int)
    return [epochs[i] for i in sorted(set(picks))]


def _over_training(images: dict, counts: dict, run: str, layer: str, path: Path) -> list[Path]:
    """Top: the atlas at a few epochs on the shared map; bottom: where the activations are (density)."""
    shown = _shown(list(images))
    fig, axes = plt.subplots(2, len(shown), figsize=(3.2 * len(shown), 6.4), squeeze=False)
    top = max(c.max() for c in counts.values())
    for k, epoch in enumerate(shown):
        axes[0, k].imshow(images[epoch])
        axes[0, k].set_title(f"epoch {epoch}" + (" (random init)" if epoch == 0 else ""))
        axes[1, k].imshow(counts[epoch], origin="lower", cmap="magma", vmin=0, vmax=top)
        axes[1, k].set_xlabel("activations per cell")
        for ax in axes[:, k]:
            ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"{run} {layer}: activation atlas over training (one UMAP layout for every epoch)")
    return save(fig, path)


def _map_and_units(study, group, run: str, layer: str, epoch: int, i: int, atlas: np.ndarray, path: Path) -> list[Path]:
    """The seed's Figures 1–3: the map coloured by class, the atlas, and random single units."""
    layout, labels = np.asarray(group["layout"][i]), np.asarray(group["label"][:])
    categories = group.attrs.get("categories", [str(c) for c in np.unique(labels)])
    units = _unit_prototypes(study, run, layer, epoch)
    fig, axes = plt.subplots(1, 3 if units is not None else 2, figsize=(15 if units is not None else 10, 5))
    for k, name in enumerate(categories):
        pick = labels == k
        axes[0].scatter(layout[pick, 0], layout[pick, 1], s=3, alpha=0.5, label=name)
    axes[0].legend(markerscale=4, fontsize=8)
    axes[0].set(xlim=(0, 1), ylim=(0, 1), aspect="equal")  # the atlas's square: where the points are on it
    axes[0].set_title(f"UMAP of the activations at epoch {epoch}, by class")
    axes[1].imshow(atlas)
    axes[1].set_title(f"atlas, epoch {epoch}")
    if units is not None:
        axes[2].imshow(units)
        axes[2].set_title("single units (prototypes, random channels)")
    for ax in axes:
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"{run} {layer}")
    return save(fig, path)


def _unit_prototypes(study, run: str, layer: str, epoch: int, count: int = 16) -> np.ndarray | None:
    """A 4 x 4 grid of stored prototypes of randomly chosen channels at that epoch (repeat 0), if any."""
    from ..store.arrays import ArrayStore
    from .prototypes import grid_image

    store = ArrayStore(Path(study.store) / "arrays.zarr")
    if run not in store.runs() or not store.has_layer(run, layer) or (epoch, 0) not in store.done_jobs(run, layer):
        return None
    images = store.read_job(run, layer, epoch, 0)["prototype"]
    pick = np.sort(np.random.default_rng(0).choice(len(images), min(count, len(images)), replace=False))
    return grid_image(images[pick], ncols=4).permute(1, 2, 0).numpy()
