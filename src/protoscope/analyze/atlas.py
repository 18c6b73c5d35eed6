"""Activation atlases: where a layer's activations lie, averaged on a grid, as directions to draw.

The recipe (Carter et al. 2019, lucid's ``recipes/activation_atlas``), in steps a researcher can
check one by one:

1. `sample_positions` / `sample_activations`: one activation vector per image — for a conv layer
   at one random spatial position per image, drawn from a seed only, so every checkpoint is sampled
   at the same places;
2. `umap_layout`: 2-D with UMAP (umap-learn, cosine metric, seeded: the same layout twice), then
   `normalize_layout`: clipped to its 1st–99th percentile and rescaled to [0, 1]. Over training,
   every epoch needs the same map, so a cell means the same region at every epoch:
   `aligned_layout` (the default) fits one UMAP per epoch, each pulled toward the previous one's
   places for the same images (umap-learn's AlignedUMAP); `shared_layout` fits one UMAP on all
   epochs' activations together — exact, but epochs whose activations differ much become separate
   islands of the map, each on a few cells (on the demo: 8–15 of 144 cells per epoch, against
   47–64 aligned; bench/atlas_layout.py);
3. `grid_average`: a g × g grid over the unit square, each cell the mean of its activations, cells
   with fewer than `min_count` points left empty (NaN);
4. `whiten`: each mean times the inverse of the uncentred covariance AᵀA/N, so the icon shows what
   is particular to the cell rather than what every activation shares;
5. the synthesis engine draws every non-empty cell's direction at once (`atlas_draw.draw_cells`, which
   `protoscope.atlas` and the `atlas` stage both run).

Why written here: no PyTorch library has activation atlases (lucent has none; captum's helpers are
unreleased), and the grid, whitening and shared layout are a few lines each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def import_umap():
    """umap-learn, imported with numba's on-disk cache switched on for its kernels.

    Why: umap-learn compiles its layout kernels (UMAP's and AlignedUMAP's) without `cache=True`,
    so every new process — a pool worker, the demo, a test worker — spent 20-60 s compiling them
    before its first atlas. With the cache the next process loads them in about a second
    (bench/umap_cache.py). Numba keys the cache on the source files, so an upgrade recompiles.
    A kernel umap-learn asks not to cache stays uncached; nothing else is changed.
    """
    import sys

    if "umap" in sys.modules:  # imported already (by us, or by the user's code: left as it is)
        return sys.modules["umap"]
    import numba

    plain = numba.njit, numba.jit

    def caching(decorator):
        def decorate(*args, **kwargs):
            kwargs.setdefault("cache", True)
            return decorator(*args, **kwargs)

        return decorate

    numba.njit, numba.jit = caching(plain[0]), caching(plain[1])
    try:
        import umap
    finally:
        numba.njit, numba.jit = plain
    return umap


def sample_positions(images: int, height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One (y, x) per image, from `seed` alone: the same places at every checkpoint."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, height, images), rng.integers(0, width, images)


def sample_activations(acts: np.ndarray, ys: np.ndarray | None = None, xs: np.ndarray | None = None) -> np.ndarray:
    """(N, C, H, W) at one position per image -> (N, C); (N, C) stays as it is."""
    acts = np.asarray(acts)
    if acts.ndim == 2:
        return acts
    if acts.ndim != 4 or ys is None or xs is None:
        raise ValueError(f"sample_activations needs (N, C) or (N, C, H, W) with positions, got {acts.shape}")
    return acts[np.arange(len(acts)), :, ys, xs]


def umap_layout(acts: np.ndarray, n_neighbors: int = 20, min_dist: float = 0.01, seed: int = 0) -> np.ndarray:
    """(N, C) -> (N, 2) with UMAP, cosine metric, seeded (single-threaded, so reproducible)."""
    import warnings

    umap = import_umap()
    with warnings.catch_warnings():  # "n_jobs overridden to 1 by setting random_state": what we want
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, len(acts) - 1), min_dist=min_dist,
                            metric="cosine", random_state=seed, n_jobs=1)
        return reducer.fit_transform(np.asarray(acts, np.float32)).astype(np.float64)


def normalize_layout(layout: np.ndarray, lower: float = 1.0, upper: float = 99.0) -> np.ndarray:
    """Clip each axis to its [lower, upper] percentile and rescale to [0, 1] (outliers would
    otherwise squeeze the rest of the map into a few cells)."""
    layout = np.asarray(layout, np.float64)
    lo, hi = np.percentile(layout, lower, axis=0), np.percentile(layout, upper, axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.clip((layout - lo) / span, 0.0, 1.0)


def grid_cells(xy: np.ndarray, grid: int) -> np.ndarray:
    """The cell of each point of the unit square, row-major: row = y, column = x (1.0 is in the last)."""
    ij = np.minimum((np.asarray(xy) * grid).astype(np.int64), grid - 1)
    return ij[:, 1] * grid + ij[:, 0]


@dataclass
class Grid:
    """A g × g grid of mean activations: `means` (g·g, C), NaN rows where a cell has fewer than
    `min_count` points; `counts` (g·g,) points per cell; cell k is row k // g, column k % g."""

    size: int
    means: np.ndarray
    counts: np.ndarray
    min_count: int

    @property
    def filled(self) -> np.ndarray:
        return self.counts >= self.min_count


def grid_average(xy: np.ndarray, acts: np.ndarray, grid: int = 15, min_count: int = 8) -> Grid:
    """Average the activations falling in each cell of a g × g grid over the unit square."""
    acts = np.asarray(acts, np.float64)
    cells = grid_cells(xy, grid)
    counts = np.bincount(cells, minlength=grid * grid)
    sums = np.zeros((grid * grid, acts.shape[1]))
    np.add.at(sums, cells, acts)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
    means[counts < min_count] = np.nan
    return Grid(grid, means, counts, min_count)


def whiten(means: np.ndarray, acts: np.ndarray) -> np.ndarray:
    """Each row of `means` times the inverse of the uncentred covariance AᵀA/N of `acts`
    (pseudo-inverse: a layer's dead units make it singular)."""
    acts = np.asarray(acts, np.float64)
    covariance = acts.T @ acts / len(acts)
    return np.asarray(means, np.float64) @ np.linalg.pinv(covariance, hermitian=True)


def aligned_layout(blocks: list[np.ndarray], n_neighbors: int = 20, min_dist: float = 0.01, seed: int = 0,
                   regularisation: float = 1e-2) -> list[np.ndarray]:
    """One UMAP per set of activations of the same images (epochs, runs), in order, each aligned with
    the next through the images they share (umap-learn's AlignedUMAP), normalized together."""
    import warnings

    umap = import_umap()
    sizes = {len(b) for b in blocks}
    if len(sizes) != 1:
        raise ValueError(f"aligned layouts need the same images in every set; got sizes {sorted(sizes)}")
    if len(blocks) == 1:
        return [normalize_layout(umap_layout(blocks[0], n_neighbors, min_dist, seed))]
    n = sizes.pop()
    relations = [{i: i for i in range(n)} for _ in blocks[:-1]]  # image i is image i in the next set
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        model = umap.AlignedUMAP(n_neighbors=min(n_neighbors, n - 1), min_dist=min_dist, metric="cosine",
                                 random_state=seed, alignment_regularisation=regularisation)
        model.fit([np.asarray(b, np.float32) for b in blocks], relations=relations)
    joint = normalize_layout(np.concatenate([np.asarray(e, np.float64) for e in model.embeddings_]))
    return np.split(joint, np.cumsum([n] * len(blocks))[:-1])


def shared_layout(blocks: list[np.ndarray], **umap_options) -> list[np.ndarray]:
    """One UMAP fitted on several sets of activations together (epochs, or runs), normalized
    together; returns each set's points, so a cell is the same region of the map for all of them."""
    sizes = [len(b) for b in blocks]
    joint = normalize_layout(umap_layout(np.concatenate(blocks), **umap_options))
    return np.split(joint, np.cumsum(sizes)[:-1])
