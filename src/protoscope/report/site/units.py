"""What a unit page and a layer view show, read from the stores in bulk per (run, layer).

- `layer_data`: over all epochs — scores per repeat, silent flags, rate of change and consistency
  (pixel space, mse), the unit's identity epoch (tracking) and its matched unit in each aligned run;
- `epoch_data`: at one epoch — the Adam trace of each unit and repeat (at most `TRACE_POINTS`
  points), the top-activating stimulus images and a histogram of the unit's stimulus activations.

Everything is plain lists of rounded numbers (None for missing), ready for JSON.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

TRACE_POINTS = 64
TOP_IMAGES = 8
HISTOGRAM_BINS = 20


def rounded(values, digits: int = 4):
    """An array (or number) as nested lists of floats with `digits` significant digits; NaN -> None."""
    array = np.asarray(values, np.float64)
    finite = np.isfinite(array)
    with np.errstate(all="ignore"):
        scale = 10.0 ** (digits - 1 - np.floor(np.log10(np.abs(np.where(finite & (array != 0), array, 1)))))
        out = np.asarray(np.round(array * scale) / scale).astype(object)
    if out.ndim == 0:
        return float(out.item()) if finite else None
    out[~finite] = None
    return out.tolist()


def open_group(path: Path) -> zarr.Group | None:
    return zarr.open_group(path, mode="r", zarr_format=3) if (path / "zarr.json").is_file() else None


@dataclass(frozen=True)
class LayerArrays:
    """What every part of the site needs from a layer's prototype group, read once."""

    group: zarr.Group
    epochs: list[int]
    done: np.ndarray  # (epoch, repeat) bool
    score: np.ndarray  # (epoch, repeat, unit)

    @classmethod
    def read(cls, group: zarr.Group) -> "LayerArrays":
        return cls(group, [int(e) for e in group["epoch"][:]], np.asarray(group["done"][:]),
                   np.asarray(group["score"][:]))


def layer_data(store: Path, run: str, layer: str, arrays: LayerArrays, partners: dict) -> dict:
    """The unit-level series of one (run, layer) over training."""
    epochs, done, prototypes = arrays.epochs, arrays.done, arrays.group
    score = np.where(done[..., None], arrays.score, np.nan)
    data = {"epochs": epochs, "repeats": int(score.shape[1]), "done": done.tolist(),
            "score": rounded(score), "silent": np.asarray(prototypes["silent"][:]).astype(int).tolist(),
            "partners": partners}
    metrics = open_group(store / "unit_metrics.zarr" / "pixel" / run / layer)
    if metrics is not None and "change_mse" in metrics:
        unit_epochs = [int(e) for e in metrics["epoch"][:]]
        data["metric_epochs"] = unit_epochs
        with warnings.catch_warnings():  # the last epoch has no change: all NaN, mean NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            data["change"] = rounded(np.nanmean(np.asarray(metrics["change_mse"][:]), axis=1))
        data["consistency"] = rounded(np.asarray(metrics["consistency_mse"][:]))
    track = _track(store, run, layer)
    if track is not None:
        data["identity_epoch"] = track
    trust = _trust(store, run, layer)
    if trust is not None:
        data["trust"] = trust
    tuning = _tuning(store, run, layer, epochs)
    if tuning is not None:
        data["tuning"] = tuning
    return data


TUNING_SHOWN = ("colour_selectivity", "colour_selectivity_chance", "preferred_hue", "orientation_selectivity",
                "preferred_orientation", "preferred_frequency")
TUNING_CURVES = {"hue_curve": "hue", "orientation_curve": "orientation"}


def _tuning(store: Path, run: str, layer: str, epochs: list[int]) -> dict | None:
    """{index: (epoch, unit)} and {curve: (epoch, step, unit)} on the prototype store's epochs (NaN
    where tuning was not measured), with each curve's steps; None when the tuning stage has not run."""
    group = open_group(store / "tuning.zarr" / run / layer)
    if group is None:
        return None
    stored = [int(e) for e in group["epoch"][:]]
    done = np.asarray(group["done"][:], bool) if "done" in group else np.ones(len(stored), bool)
    rows = [stored.index(e) if e in stored and done[stored.index(e)] else None for e in epochs]

    def on_epochs(name: str) -> np.ndarray:
        values = np.asarray(group[name][:])
        blank = np.full(values.shape[1:], np.nan)
        return np.stack([values[i] if i is not None else blank for i in rows])

    data = {name: rounded(on_epochs(name), 3) for name in TUNING_SHOWN}
    data |= {name: rounded(on_epochs(name), 3) for name in TUNING_CURVES}
    data["steps"] = {axis: [float(v) for v in group[axis][:]] for axis in TUNING_CURVES.values()}
    return data


TRUST_SCORES = ("path_similarity", "robustness", "natural_ratio", "plausibility", "spectral_naturalness",
                "trustworthy")


def _trust(store: Path, run: str, layer: str) -> dict | None:
    """{score: (epoch, unit)} the mean over repeats of each trust score (trustworthy: the share of
    repeats), on the prototype store's epochs; None when the trust stage has not run."""
    group = open_group(store / "trust.zarr" / run / layer)
    if group is None:
        return None
    with warnings.catch_warnings():  # a silent unit's scores are all NaN: mean NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return {name: rounded(np.nanmean(np.asarray(group[name][:]), axis=1), 3) for name in TRUST_SCORES
                if name in group}


def _track(store: Path, run: str, layer: str) -> list[int] | None:
    path = store / "align" / "track" / run / f"{layer}.nc"
    if not path.is_file():
        return None
    from ...store.alignment import read_result

    with read_result(path) as ds:
        return [int(e) for e in ds["identity_epoch"].values]


def alignment_partners(store: Path, runs: list[str], layer: str) -> dict[str, dict]:
    """{run: {other run: {"epoch", "unit", "corr", "method"}}} from every stored pair alignment of `layer`:
    bipartite matching both ways (one-to-one), semi-matching from the pair's first run."""
    from ...store.alignment import read_result

    found: dict[str, dict] = {run: {} for run in runs}
    root = store / "align"
    for path in sorted(root.glob(f"epoch_*/*~*/{layer}.nc")) if root.is_dir() else []:
        epoch = int(path.parent.parent.name.removeprefix("epoch_"))
        a, b = path.parent.name.split("~", 1)
        with read_result(path) as ds:
            if "partner_bipartite" not in ds:
                continue
            live_a = ds["a"].values.astype(int)
            partner = ds["partner_bipartite"].values
            value = ds["value_bipartite"].values
            n_a, n_b = ds.sizes["unit_a"], ds.sizes["unit_b"]
        forward, forward_corr = np.full(n_a, -1), np.full(n_a, np.nan)
        backward, backward_corr = np.full(n_b, -1), np.full(n_b, np.nan)
        for unit, other, corr in zip(live_a, partner, value):
            if np.isfinite(other) and other >= 0:
                forward[unit], forward_corr[unit] = int(other), corr
                backward[int(other)], backward_corr[int(other)] = unit, corr
        for run, other, units, corrs in ((a, b, forward, forward_corr), (b, a, backward, backward_corr)):
            if run in found:
                found[run][other] = {"epoch": epoch, "unit": units.tolist(), "corr": rounded(corrs)}
    return found


def epoch_data(prototypes: zarr.Group, index: int, activations: np.ndarray | None) -> dict:
    """One epoch of one (run, layer): traces, and from the stimulus activations (images, units) the top
    images and a histogram per unit."""
    trace = np.asarray(prototypes["trace"][index])  # (repeat, unit, step)
    steps = trace.shape[-1]
    keep = np.unique(np.linspace(0, steps - 1, min(steps, TRACE_POINTS)).round().astype(int))
    data = {"trace_steps": keep.tolist(), "trace": rounded(trace[..., keep])}
    if activations is not None:
        order = np.argsort(-activations, axis=0, kind="stable")[:TOP_IMAGES].T  # (unit, k)
        data["top"] = order.tolist()
        data["top_value"] = rounded(np.take_along_axis(activations, order.T, axis=0).T)
        data["histogram"] = [_histogram(column) for column in activations.T]
    return data


def _histogram(values: np.ndarray) -> dict:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return {"lo": None, "hi": None, "counts": []}
    lo, hi = float(finite.min()), float(finite.max())
    counts, _ = np.histogram(finite, bins=HISTOGRAM_BINS, range=(lo, hi if hi > lo else lo + 1e-6))
    return {"lo": rounded(lo), "hi": rounded(hi), "counts": counts.tolist()}
