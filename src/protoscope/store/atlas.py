"""Activation atlases on disk.

``STORE/atlas.zarr/runs/<run>/<layer>/`` is a block group (`store.blocks`), one block per epoch::

    layout[epoch, image, xy]          float32  each image's place on the shared map, in [0, 1]
    count[epoch, cell]                int32    activations per grid cell (cell = row * grid + column)
    direction[epoch, cell, unit]      float32  the cell's whitened mean activation (NaN: empty cell)
    icon[epoch, cell, y, x, rgb]      uint8    the engine's image for that direction (0: empty cell)
    score[epoch, cell]                float32  the icon's objective value
    done[epoch]; coords epoch, cell, label[image] (the image's class; attrs["categories"])
"""

from __future__ import annotations

import numpy as np

from . import layout
from .blocks import Array, BlockGroup, Schema


def atlas_group(study, run: str, layer: str, schema: Schema | None = None) -> BlockGroup:
    root = layout.atlas(study)
    return BlockGroup(root / "runs" / run / layer, schema, "the atlas store", root)


def atlas_schema(spec, epochs: list[int], units: int, size: int, labels: np.ndarray) -> Schema:
    cells, n, e = spec.grid * spec.grid, len(labels), len(epochs)
    return Schema({
        "layout": Array(("epoch", "image", "xy"), (e, n, 2), "float32", float("nan")),
        "count": Array(("epoch", "cell"), (e, cells), "int32", 0),
        "direction": Array(("epoch", "cell", "unit"), (e, cells, units), "float32", float("nan")),
        "icon": Array(("epoch", "cell", "y", "x", "rgb"), (e, cells, size, size, 3), "uint8", 0),
        "score": Array(("epoch", "cell"), (e, cells), "float32", float("nan")),
    }, blocks=1, coords={"epoch": np.asarray(epochs, "int64"), "cell": np.arange(cells, dtype="int64"),
                         "label": (("image",), np.asarray(labels, "int64"))})
