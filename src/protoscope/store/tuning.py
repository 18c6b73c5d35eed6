"""Tuning curves and indices on disk, indexed like the prototypes (unit i is channel i).

``STORE/tuning.zarr/<run>/<layer>/``: a block group (`store.blocks`) per (run, layer), one block per
epoch (a tuning job measures one checkpoint, every layer). Each index is ``[epoch, unit]``; each
curve ``[epoch, step, unit]``: the hue curve (the mean over the painted probe images), the
orientation curve at the unit's preferred frequency, the frequency curve at its preferred
orientation, both at full contrast, and the contrast curve at both. NaN for a unit no stimulus
drives above 0.
"""

from __future__ import annotations

import numpy as np

from .blocks import Array, EpochBlocks, Schema

INDICES = {
    "colour_selectivity": "share of the response variance over (image, hue) the hue explains (eta squared); 0: colour-blind",
    "colour_selectivity_chance": "the same with the hues shuffled within each image: chance",
    "preferred_hue": "degrees in the YIQ chroma plane: 0 orange-red, 90 purple, 180 teal, 270 green-yellow",
    "preferred_orientation": "degrees, 0-180: the direction the grating's luminance changes along",
    "orientation_selectivity": "1 - circular variance of the orientation curve; 0 untuned, 1 one orientation",
    "preferred_frequency": "cycles per image",
    "frequency_bandwidth": "octaves: full width at half height of the frequency curve",
    "contrast_c50": "contrast at half the response's rise",
    "contrast_saturation": "response at full contrast over the maximum; below 1: it saturates and falls",
}
CURVES = {"hue_curve": "hue", "orientation_curve": "orientation", "frequency_curve": "frequency",
          "contrast_curve": "contrast"}


class TuningStore(EpochBlocks):
    """``tuning.zarr/<run>/<layer>/``; attrs ``settings`` record the stimulus set's steps."""

    what = "the tuning store"

    def create(self, run: str, layer: str, epochs: list[int], units: int, steps: dict[str, np.ndarray],
               settings: dict) -> None:
        """The group and its arrays, before any job runs; other settings are refused. `steps`: the
        values along each curve's axis (hue, orientation, frequency, contrast)."""
        arrays = {name: Array(("epoch", "unit"), (len(epochs), units), "float32", float("nan"), description=text)
                  for name, text in INDICES.items()}
        arrays |= {name: Array(("epoch", axis, "unit"), (len(epochs), len(steps[axis]), units), "float32",
                               float("nan")) for name, axis in CURVES.items()}
        coords = {"epoch": np.asarray(epochs, "int64"), "unit": np.arange(units, dtype="int64"),
                  **{axis: np.asarray(values, "float64") for axis, values in steps.items()}}
        self._group(run, layer, Schema(arrays, blocks=1, coords=coords)).create({"settings": settings})


def tuning_values(study, run: str, layer: str):
    """The (run, layer) tuning as an xarray Dataset, or None when none is stored."""
    import xarray as xr

    from . import layout

    where = layout.tuning(study) / run / layer
    if not (where / "zarr.json").is_file():
        return None
    return xr.open_zarr(where, consolidated=False, zarr_format=3)
