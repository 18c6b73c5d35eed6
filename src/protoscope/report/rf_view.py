"""What of a prototype its unit sees: the square of the image inside the layer's receptive field.

The site and the figures show that square, enlarged, by default (issue #28): on a 32 px image a
layer1 unit sees a few pixels, and the rest of its prototype is whatever the search left there.
"""

from __future__ import annotations

import numpy as np


def rf_box(masks: list[np.ndarray], size: int, level: float = 0.1) -> list[int] | None:
    """The square, in image pixels (y0, y1, x0, x1; half-open), holding every epoch's layer mask
    above `level` of its peak: what the site shows of a prototype by default, enlarged. None when
    there is no mask or it covers most of the image (then the whole canvas is the view)."""
    inside = np.zeros((size, size), bool)
    for mask in masks:
        if np.isfinite(mask).all() and mask.max() > 0:
            inside |= mask >= level * mask.max()
    if not inside.any():
        return None
    rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
    side = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    if side >= 0.75 * size:
        return None
    centre = ((rows[0] + rows[-1] + 1) / 2, (cols[0] + cols[-1] + 1) / 2)
    y0 = int(np.clip(round(centre[0] - side / 2), 0, size - side))
    x0 = int(np.clip(round(centre[1] - side / 2), 0, size - side))
    return [y0, y0 + int(side), x0, x0 + int(side)]


def seen(images: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
    """(N, S, S, 3) prototypes cut to `rf_box` of the layer's masks (unchanged when there is none)."""
    box = rf_box(masks, images.shape[1])
    return images if box is None else images[:, box[0]:box[1], box[2]:box[3]]
