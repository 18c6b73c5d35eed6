"""Reading a written site back in tests and benchmarks: its data scripts and sprite cells."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def read_script(path: Path):
    """The data a `protoscope.receive(key, data);` file carries."""
    text = Path(path).read_text()
    start = text.index(",") + 1
    return json.loads(text[start:text.rindex(")")])


def cell(sheet_path: Path, unit: int, columns: int, size: int) -> np.ndarray:
    sheet = np.asarray(Image.open(sheet_path).convert("RGB"))
    row, column = divmod(unit, columns)
    return sheet[row * size:(row + 1) * size, column * size:(column + 1) * size]


def sheet_cell(stem: Path, index: int, entry: dict) -> np.ndarray:
    """Cell `index` of a chunked sheet (`stem` without .png; `entry` has columns, cell and chunk)."""
    chunk, at = divmod(index, entry.get("chunk") or index + 1)
    path = stem.parent / f"{stem.name}{f'_c{chunk}' if chunk else ''}.png"
    return cell(path, at, entry["columns"], entry["cell"])


def chromium_path() -> str | None:
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(candidate).is_file():
            return candidate
    return None


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
