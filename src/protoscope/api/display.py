"""`show`: any of the API's images as one picture — shown by Jupyter, saved only when asked."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..synth.engine import Prototypes
from .atlases import Atlas


def show(images, path: str | Path | None = None, *, ncols: int | None = None, scale: int | None = None):
    """A grid of images as a PIL image, which Jupyter displays when it is a cell's value.

    `images`: a `Prototypes` (unit 0 top left, row by row) or a list of them (one row per model,
    e.g. checkpoints), an `Atlas` (its icons in place on the map: row 0 at the bottom, empty cells
    white), a `ReceptiveField` (map and mask side by side; per-unit maps too when it has them), or
    a tensor / array of images — (N, S, S, 3) or (N, 3, S, S), uint8 or float in [0, 1] — or of
    maps, (H, W) or (N, H, W), each scaled to its own range. Small images are enlarged (nearest neighbour, `scale`; default: to about 64 px
    each) so a notebook shows them. With `path`, the picture is also saved as a PNG there.
    """
    from PIL import Image

    if isinstance(images, Atlas):
        picture, tile = _atlas(images), int(images.icon.shape[1])
    elif isinstance(images, (list, tuple)) and images and all(isinstance(p, Prototypes) for p in images):
        batch = torch.cat([_as_batch(p) for p in images])
        picture, tile = _grid(batch, ncols or len(images[0].images)), int(batch.shape[-1])
    else:
        batch = _as_batch(images)
        picture, tile = _grid(batch, ncols), int(batch.shape[-1])
    scale = scale if scale is not None else max(1, 64 // max(1, tile))
    image = Image.fromarray(picture)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, format="PNG")
    return image


def _as_batch(images) -> torch.Tensor:
    """(N, 3, H, W) float in [0, 1] from anything `show` takes."""
    from ..synth.receptive import ReceptiveField

    if isinstance(images, Prototypes):
        images = images.images
    elif isinstance(images, ReceptiveField):
        maps = [images.map, images.mask]
        if images.unit_maps is not None:
            maps += list(images.unit_maps) + list(images.unit_masks)
        return _maps(torch.stack([torch.as_tensor(m) for m in maps]))
    try:
        x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise UserError(f"show() takes Prototypes, an Atlas, a ReceptiveField or images, "
                        f"not {type(images).__name__}.") from None
    if x.ndim == 2 or (x.ndim == 3 and 3 not in (x.shape[0], x.shape[-1])):
        return _maps(x if x.ndim == 3 else x[None])
    if x.ndim == 3:
        x = x[None]
    if x.ndim == 4 and x.shape[1] != 3 and x.shape[-1] == 3:
        x = x.permute(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] != 3:
        raise UserError(f"show() takes RGB images (N, 3, H, W) or (N, H, W, 3), or (H, W) maps; got {tuple(x.shape)}.")
    return x.float() / 255 if x.dtype == torch.uint8 else x.float().clamp(0, 1)


def _maps(maps: torch.Tensor) -> torch.Tensor:
    """(N, H, W) maps -> grey images, each scaled to its own [min, max]."""
    maps = maps.float()
    low = maps.amin(dim=(1, 2), keepdim=True)
    span = (maps.amax(dim=(1, 2), keepdim=True) - low).clamp_min(1e-12)
    return ((maps - low) / span)[:, None].expand(-1, 3, -1, -1)


def _grid(x: torch.Tensor, ncols: int | None) -> np.ndarray:
    from torchvision.utils import make_grid

    ncols = ncols or max(1, math.ceil(math.sqrt(len(x))))
    grid = make_grid(x, nrow=ncols, padding=2, pad_value=1.0)
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _atlas(atlas) -> np.ndarray:
    from ..report.atlas import mosaic

    return mosaic(atlas.icon, atlas.count, atlas.grid, atlas.min_count)
