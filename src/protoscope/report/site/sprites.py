"""Sprite sheets: every unit's image of one (run, layer, epoch, repeat) in one PNG.

A layer view shows hundreds of units and a unit page steps through every epoch; one file per sheet
keeps that to one request per slider step, and a study of a million prototypes to a few thousand
files. A layer of more than `CHUNK` units gets a sheet per `CHUNK` units (``…_c1.png``, ``…_c2.png``
after the first): a unit page shows one unit from four sheets per step, and a browser decodes a whole
sheet to show one cell (512 units at 96 px: 0.5 s a step, `bench/results/scale_soak_before_fixes.txt`).
Unit `i` is cell ``i % CHUNK`` of chunk ``i // CHUNK``, at column ``cell % columns``, row
``cell // columns``, every cell `cell` pixels square; the page scales the sheet with CSS
(`background-size`) to show one cell at any size.

Sheets are written only when their source changed (`Manifest`): a report rerun on an unchanged
store writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from ...atomic import atomic_path, write_text

MAX_CELL = 128  # px; larger prototypes are shrunk in the sheet (the store keeps them whole)
CHUNK = 64  # units per sheet: at most 1024 x 1024 px


def columns(units: int) -> int:
    return max(1, math.ceil(math.sqrt(units)))


def chunk_columns(units: int) -> int:
    """Columns of every sheet of a `units`-unit layer."""
    return columns(min(units, CHUNK))


def chunked(relative: str, units: int) -> list[tuple[str, slice]]:
    """(file name, units in it) of each sheet of a `units`-unit layer, `relative` ending in .png."""
    stem = relative.removesuffix(".png")
    return [(f"{stem}_c{k}.png" if k else relative, slice(k * CHUNK, min((k + 1) * CHUNK, units)))
            for k in range(max(1, math.ceil(units / CHUNK)))]


def cell_size(image_size: int) -> int:
    return min(image_size, MAX_CELL)


def sheet(images: np.ndarray, cell: int, cols: int | None = None) -> np.ndarray:
    """(units, S, S, 3) uint8 -> one (rows·cell, cols·cell, 3) image, white where no unit is; `cols`
    defaults to `columns(units)` (a layer's chunks all take its first chunk's)."""
    units, size = len(images), images.shape[1]
    if size != cell:
        images = np.stack([np.asarray(Image.fromarray(im).resize((cell, cell), Image.BILINEAR)) for im in images])
    cols = cols or columns(units)
    rows = math.ceil(units / cols)
    out = np.full((rows * cell, cols * cell, 3), 255, np.uint8)
    for index in range(units):
        r, c = divmod(index, cols)
        out[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = images[index]
    return out


def masked(images: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Prototypes seen through their receptive-field mask (the layer's (S, S) or each unit's (U, S, S)):
    outside the mask, mid grey. An unusable mask (empty, or never written) leaves the image as it is: the
    metrics' rule (`analyze.prototype_metrics.usable_masks`)."""
    import torch

    from ...analyze.prototype_metrics import usable_masks

    if mask is None:
        return images
    weights = torch.as_tensor(np.broadcast_to(np.asarray(mask, np.float32), images.shape[:3]).copy())
    weights = usable_masks(weights)[0].clamp(0, 1).numpy()
    out = images.astype(np.float32) * weights[..., None] + 128 * (1 - weights[..., None])
    return out.round().astype(np.uint8)


def write_sheets(images: np.ndarray, relative: str, cell: int, site: Path, manifest: "Manifest", stamp: str) -> None:
    """Every sheet of `images` (one per `CHUNK`, named by `chunked`) under `site`, recorded with `stamp`."""
    cols = chunk_columns(len(images))
    for name, units in chunked(relative, len(images)):
        write_png(sheet(images[units], cell, cols), site / name)
        manifest.record(name, stamp)


def write_png(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG", compress_level=1)  # fast: sheets are rewritten rarely


def fingerprint(*parts) -> str:
    """A short hash of arrays and plain values: what a file was made from."""
    digest = hashlib.sha1()
    for part in parts:
        digest.update(np.ascontiguousarray(part).tobytes() if isinstance(part, np.ndarray) else repr(part).encode())
    return digest.hexdigest()[:16]


class Manifest:
    """{file under the site: the fingerprint of what it was made from}, kept in ``manifest.json``."""

    def __init__(self, site: Path):
        self.path = site / "manifest.json"
        self.site = site
        self.entries: dict[str, str] = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.written = 0

    def stale(self, relative: str, print_: str) -> bool:
        return self.entries.get(relative) != print_ or not (self.site / relative).is_file()

    def record(self, relative: str, print_: str) -> None:
        self.entries[relative] = print_
        self.written += 1

    def save(self) -> None:
        write_text(self.path, json.dumps(self.entries, indent=0, sort_keys=True))
