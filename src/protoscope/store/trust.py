"""Trust scores on disk, indexed exactly like the prototypes (unit i is channel i).

``STORE/trust.zarr/<run>/<layer>/``: one float32 array per score, ``[epoch, repeat, unit]``, a block
group (`store.blocks`) per (run, layer) with one block per epoch (a trust job scores one checkpoint,
every layer). NaN where the engine found the unit silent, or where a score was not measured
(plausibility without a judging run, transfer without a stored alignment at that epoch).
"""

from __future__ import annotations

import numpy as np

from . import layout
from .blocks import Array, EpochBlocks, Schema

SCORES = {
    "path_similarity": "mean over the earlier studied layers of Spearman(prototype, top images) - Spearman(prototype, "
                       "random images) of per-channel means; chance 0",
    "spectral_naturalness": "distance of the radially averaged log-amplitude spectrum from the stimulus images' mean, "
                            "over a stimulus image's median; 1 typical",
    "robustness": "the unit's value under small shifts, scales and turns of its prototype, over its value on it",
    "natural_ratio": "the prototype's value over the best stimulus image's, at the same position",
    "plausibility": "cosine distance to random stimulus images minus to the unit's top ones, in the judging run's "
                    "last checkpoint; chance 0",
    "transfer": "the aligned partner unit's value on the prototype, over its 99th percentile on the stimulus images",
    "trustworthy": "1 when the prototype passes every threshold of `trust:`, else 0",
}


def path_array(layer: str) -> str:
    """The name of the path-similarity array at one earlier layer."""
    return f"path_similarity@{layer}"


class TrustStore(EpochBlocks):
    """``trust.zarr/<run>/<layer>/``; attrs ``settings`` record what the scores depend on."""

    what = "the trust store"

    def create(self, run: str, layer: str, epochs: list[int], repeats: int, units: int, earlier: list[str],
               settings: dict) -> None:
        """The group and its arrays, before any job runs; other settings are refused."""
        shape = (len(epochs), repeats, units)
        names = {**SCORES, **{path_array(e): f"path similarity at {e}" for e in earlier}}
        arrays = {name: Array(("epoch", "repeat", "unit"), shape, "float32", float("nan"), description=text)
                  for name, text in names.items()}
        coords = {"epoch": np.asarray(epochs, "int64"), "repeat": np.arange(repeats, dtype="int64"),
                  "unit": np.arange(units, dtype="int64")}
        self._group(run, layer, Schema(arrays, blocks=1, coords=coords)).create({"settings": settings})


def trust_values(study, run: str, layer: str):
    """The (run, layer) scores as an xarray Dataset, or None when none are stored."""
    import xarray as xr

    where = layout.trust(study) / run / layer
    if not (where / "zarr.json").is_file():
        return None
    return xr.open_zarr(where, consolidated=False, zarr_format=3)
