"""Activation atlases of models in memory: the steps of the `atlas` stage, for images you hand in."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from .inputs import as_generator, as_images, as_models, check_layer, engine_state, layer_shape, options, run_device

# AtlasSpec fields that name a study's runs, layers, epochs and data: the arguments say those here
STUDY_ONLY = ("runs", "together", "layers", "epochs", "data", "images")


@dataclass
class Atlas:
    """One model's atlas of a layer. Cell k of the g x g grid is row k // g (y, from the bottom of
    the map), column k % g (x); a cell with fewer than `min_count` images is empty (NaN direction
    and score, black icon)."""

    layout: np.ndarray  # (N, 2) each image's place on the map, in [0, 1]
    count: np.ndarray  # (g*g,) images per cell
    direction: np.ndarray  # (g*g, C) the cell's whitened mean activation
    icon: np.ndarray  # (g*g, S, S, 3) uint8, the engine's image for that direction
    score: np.ndarray  # (g*g,) the icon's objective value
    grid: int
    min_count: int
    labels: np.ndarray | None = None  # (N,) the images' labels, when given

    @property
    def filled(self) -> np.ndarray:
        return self.count >= self.min_count


def atlas(model, layer: str, images, labels=None, *, grid: int = 15, generator="fourier",
          generator_options: dict | None = None, seed: int = 0, device="auto", **settings) -> Atlas | list[Atlas]:
    """An activation atlas of `layer` (Carter et al. 2019): where images' activations lie, on a grid, drawn.

    Each image gives one activation vector (a conv layer's at one seeded random position); UMAP
    puts them on a 2-D map; each cell of a `grid` x `grid` grid averages its activations, the
    average is whitened, and the engine draws an icon for every filled cell at once — the
    `atlas` stage's steps (`analyze/atlas_draw.py`). A list of models (checkpoints) shares one
    map, so a cell means the same region for each (`layout="aligned"`: a UMAP per model, each
    pulled toward the next; "joint": one UMAP of all); model i's icons use seed `seed + i`.

    `images`: (N, 3, H, W) uint8 or float in [0, 1], or a DataLoader; `labels` ride along for
    plots. `**settings` are the study's `atlas:` fields: `min_count`, `layout`, `n_neighbors`,
    `min_dist`, `power`, `icon_size` (default: the images'), `pool_size`, `adam_steps`, `robust`,
    `batch_size`. Returns an `Atlas` (a list for a list of models); writes nothing.
    """
    from ..analyze.atlas import aligned_layout, shared_layout
    from ..analyze.atlas_draw import draw_cells, layer_samples
    from ..study import AtlasSpec

    models, several = as_models(model, "atlas")
    device = run_device(models, device)
    spec = options(AtlasSpec, {"grid": grid, "seed": seed, **settings}, "atlas", drop=STUDY_ONLY)
    x, labels = as_images(images, labels)
    if len(x) < max(spec.grid, 4):
        raise UserError(f"An atlas needs at least {max(spec.grid, 4)} images (one grid row), got {len(x)}.")
    icon = spec.icon_size or int(x.shape[-1])
    for m in models:  # the images and the icons both go through the model: both sizes must fit it
        for size in dict.fromkeys([tuple(x.shape[-2:]), (icon, icon)]):
            layer_shape(m, check_layer(m, layer), size, device)
    gen, _ = as_generator(generator, generator_options, icon, device)
    acts = []
    for m in models:
        with engine_state(m, frozen=False):
            acts.append(layer_samples(m, layer, x, spec.seed, device))
    fit = aligned_layout if spec.layout == "aligned" else shared_layout
    layouts = fit(acts, n_neighbors=spec.n_neighbors, min_dist=spec.min_dist, seed=spec.seed)
    results = []
    for i, (m, a, xy) in enumerate(zip(models, acts, layouts)):
        with engine_state(m, frozen=False):
            block = draw_cells(m, layer, a, xy, spec, gen, device, seed=spec.seed + i)
        results.append(Atlas(block["layout"], block["count"], block["direction"], block["icon"], block["score"],
                             spec.grid, spec.min_count, labels))
    return results if several else results[0]
