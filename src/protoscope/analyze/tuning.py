"""Tuning curves: what each unit responds to along hue, orientation, spatial frequency and contrast.

Every unit of a layer is read at its position (the centre cell of a spatial layer, the vector of a
flat one) in one batched pass over a stimulus set that depends only on the image size and the probe
images, so it is made once and the same at every epoch:

- **hue**: the probe images (spread over the stimulus set, every category) painted in one hue (each pixel keeps its luminance and its chroma
  magnitude), then turned around the chroma plane of YIQ in `hues` steps. The turn is a rotation of
  (I, Q) with Y fixed, so luminance is kept exactly; chroma is first shrunk per pixel where a turn
  would leave the RGB cube, so no step is clipped. Hue 0° is +I (orange-red), 90° is +Q (purple),
  180° is teal, 270° is green-yellow.
- **gratings**: grey sinusoidal gratings over the whole image (the unit's receptive field lies
  inside it) at `orientations` × `frequencies` (cycles per image) × `phases`, and at `contrasts`.

The indices (`indices`), per unit:

- ``colour_selectivity``: the share of the unit's response variance over (image, hue) that the hue
  explains (η² of a one-way ANOVA with hue as the factor); 0 for a unit that reads luminance only.
  ``colour_selectivity_chance``: the same with the hues shuffled within each image (the mean of
  `shuffles` shuffles), the value a hue-blind unit gets from its image-to-image variation alone.
- ``preferred_hue``: the angle of the hue curve's vector sum (degrees, as above).
- ``preferred_orientation``, ``orientation_selectivity``: from the phase-averaged response at the
  preferred frequency, r(θ) clipped at 0: the angle of Σ r·e^{2iθ} halved (degrees, 0-180: the
  direction the luminance changes along, counter-clockwise from the image's x axis, y up), and
  1 - circular variance = |Σ r·e^{2iθ}| / Σ r.
- ``preferred_frequency`` (cycles per image) and ``frequency_bandwidth`` (octaves): the peak of the
  frequency curve at the preferred orientation and its full width at half the peak's height (the
  curve clipped at 0) on a log₂ axis, linearly interpolated; NaN where it does not fall below half
  on both sides.
- ``contrast_c50`` and ``contrast_saturation``: at the preferred orientation and frequency, the
  contrast where the response first reaches half its rise above the lowest contrast's, and the
  response at full contrast over the maximum (1: still rising; below 1: it saturates and falls).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

# RGB <-> YIQ (NTSC 1953); hand-written because kornia has no YIQ, and its HSV hue turn does not keep luminance
RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]])
YIQ_TO_RGB = torch.linalg.inv(RGB_TO_YIQ)


@dataclass(frozen=True)
class Stimuli:
    """The stimulus set (float images in [0, 1]) and the values along each axis."""

    hue_images: torch.Tensor  # (hues, images, 3, S, S)
    gratings: torch.Tensor  # (contrasts, orientations, frequencies, phases, 3, S, S)
    hues: np.ndarray  # degrees
    orientations: np.ndarray  # degrees
    frequencies: np.ndarray  # cycles per image
    contrasts: np.ndarray


def painted(images: torch.Tensor, hues_deg: np.ndarray) -> torch.Tensor:
    """(N, 3, S, S) float RGB in [0, 1] -> (hues, N, 3, S, S): each image in one hue per step, the
    luminance and the (in-gamut) chroma magnitude of every pixel kept."""
    yiq = torch.einsum("ij,njhw->nihw", RGB_TO_YIQ, images.float())
    y, chroma = yiq[:, :1], yiq[:, 1:].norm(dim=1, keepdim=True)
    # the largest chroma at which every hue of this luminance stays inside the RGB cube
    reach = YIQ_TO_RGB[:, 1:].norm(dim=1).view(1, 3, 1, 1)  # how far each channel moves per unit of chroma
    limit = torch.minimum(y, 1 - y).clamp(min=0) / reach
    chroma = torch.minimum(chroma, limit.min(dim=1, keepdim=True).values)
    out = []
    for angle in np.radians(hues_deg):
        iq = torch.cat([chroma * math.cos(angle), chroma * math.sin(angle)], dim=1)
        rgb = torch.einsum("ij,njhw->nihw", YIQ_TO_RGB, torch.cat([y, iq], dim=1))
        out.append(rgb.clamp(0, 1))  # exact already but for rounding
    return torch.stack(out)


def grating(size: int, orientation_deg: float, cycles: float, phase: float, contrast: float) -> torch.Tensor:
    """(3, S, S) grey sinusoid in [0, 1] around 0.5; x to the right, y up, the wave along `orientation`."""
    coords = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    y, x = torch.meshgrid(1 - coords, coords, indexing="ij")
    angle = math.radians(orientation_deg)
    wave = torch.cos(2 * math.pi * cycles * (x * math.cos(angle) + y * math.sin(angle)) + phase)
    return (0.5 + 0.5 * contrast * wave).float().expand(3, size, size)


def spread(images: torch.Tensor, n: int) -> torch.Tensor:
    """`n` of `images` evenly spread over the set: a stimulus set is stored category by category, so
    its first images would all be of one category."""
    if n >= len(images):
        return images
    return images[torch.linspace(0, len(images) - 1, n).round().long()]


def make_stimuli(probe: torch.Tensor, size: int, spec) -> Stimuli:
    """The whole set for images of `size` px, from float `probe` images (N, 3, S, S) in [0, 1];
    `spec`: the study's `tuning:` section (`specs.TuningSpec`)."""
    hues = np.arange(spec.hues) * 360.0 / spec.hues
    orientations = np.arange(spec.orientations) * 180.0 / spec.orientations
    frequencies = np.geomspace(1.0, size / 4, spec.frequencies)  # up to half the Nyquist limit
    phases = np.arange(spec.phases) * 2 * math.pi / spec.phases
    contrasts = np.asarray(spec.contrasts, dtype=float)
    gratings = torch.stack([torch.stack([torch.stack([torch.stack([grating(size, o, f, p, c) for p in phases])
                                                      for f in frequencies]) for o in orientations]) for c in contrasts])
    return Stimuli(painted(probe[: spec.images], hues), gratings, hues, orientations, frequencies, contrasts)


@dataclass
class Curves:
    """Every unit's responses: hue (hues, images, units) and gratings (contrasts, orientations,
    frequencies, units), phase-averaged."""

    hue: np.ndarray
    grating: np.ndarray


def at_position(a: torch.Tensor) -> torch.Tensor:
    """(B, units) from a units-first activation (`nets.units`): a map's centre cell (a token layer's
    centre patch), a flat layer as it is."""
    return a[:, :, a.shape[2] // 2, a.shape[3] // 2] if a.ndim == 4 else a


@torch.no_grad()
def measure(read, stimuli: Stimuli, batch_size: int = 256) -> Curves | dict[str, Curves]:
    """`read(images)` at each unit's position, for float images in [0, 1]: (B, units), or
    {layer: (B, units)} for several layers read from one forward pass. One pass over the whole
    stimulus set, every unit at once; returns the Curves (or {layer: Curves})."""
    def run(images: torch.Tensor) -> dict:
        flat = images.reshape(-1, *images.shape[-3:])
        parts: dict = {}
        for i in range(0, len(flat), batch_size):
            out = read(flat[i : i + batch_size])
            for name, a in (out.items() if isinstance(out, dict) else [(None, out)]):
                parts.setdefault(name, []).append(a.float().cpu())
        return {name: torch.cat(chunks).reshape(*images.shape[:-3], -1).numpy() for name, chunks in parts.items()}

    hue, grating = run(stimuli.hue_images), run(stimuli.gratings)
    curves = {name: Curves(hue[name], grating[name].mean(axis=3)) for name in hue}  # mean over phases
    return curves[None] if None in curves else curves


def colour_selectivity(hue: np.ndarray) -> np.ndarray:
    """η² of hue, (hues, images, units) -> (units,): between-hue over total sum of squares."""
    grand = hue.mean(axis=(0, 1))
    total = ((hue - grand) ** 2).sum(axis=(0, 1))
    between = hue.shape[1] * ((hue.mean(axis=1) - grand) ** 2).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, between / np.where(total > 0, total, 1), 0.0)


def shuffled_selectivity(hue: np.ndarray, shuffles: int, seed: int = 0) -> np.ndarray:
    """The mean η² with the hue labels shuffled within each image: the chance level."""
    rng = np.random.default_rng(seed)
    out = np.zeros(hue.shape[-1])
    for _ in range(shuffles):
        order = np.argsort(rng.random(hue.shape[:2]), axis=0)  # a permutation of hues per image
        out += colour_selectivity(np.take_along_axis(hue, order[..., None], axis=0))
    return out / max(shuffles, 1)


def circular(curve: np.ndarray, angles_deg: np.ndarray, period: float) -> tuple[np.ndarray, np.ndarray]:
    """(preferred angle in [0, period), 1 - circular variance) of non-negative curves (steps, units)."""
    theta = np.radians(angles_deg) * (360.0 / period)
    r = np.clip(curve, 0, None)
    vector = (r * np.exp(1j * theta)[:, None]).sum(axis=0)
    total = r.sum(axis=0)
    preferred = (np.degrees(np.angle(vector)) % 360.0) * (period / 360.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        strength = np.where(total > 0, np.abs(vector) / np.where(total > 0, total, 1), 0.0)
    return preferred, strength


def half_height_width(curve: np.ndarray, axis_values: np.ndarray) -> float:
    """Full width at half height of a 1-d curve around its peak, in the units of `axis_values`
    (linear interpolation); NaN when it does not fall to half on both sides."""
    peak = int(np.argmax(curve))
    half = curve[peak] / 2
    if curve[peak] <= 0:
        return float("nan")

    def crossing(indices) -> float | None:
        for a, b in zip(indices[:-1], indices[1:]):
            if curve[b] <= half:
                return axis_values[a] + (curve[a] - half) / (curve[a] - curve[b]) * (axis_values[b] - axis_values[a])
        return None

    low, high = crossing(list(range(peak, -1, -1))), crossing(list(range(peak, len(curve))))
    return float("nan") if low is None or high is None else float(high - low)


def indices(curves: Curves, stimuli: Stimuli, shuffles: int = 20) -> dict[str, np.ndarray]:
    """Every index of the module's docstring, (units,) each, and each unit's four curves (step, units)
    as stored (`store/tuning.py`); NaN for a unit no stimulus drives above 0."""
    found = _indices(curves, stimuli, shuffles)
    silent = (curves.hue.max(axis=(0, 1)) <= 0) & (curves.grating.max(axis=(0, 1, 2)) <= 0)
    return {name: np.where(silent, np.nan, values) for name, values in found.items()}


def unit_curves(curves: Curves) -> dict[str, np.ndarray]:
    """Each unit's hue curve (mean over images), its orientation curve at its preferred frequency,
    its frequency curve at its preferred orientation (both at full contrast), and its contrast curve
    at both: (steps, units) each."""
    full = curves.grating[-1]  # (orientations, frequencies, units)
    units = np.arange(full.shape[-1])
    o_best, f_best = np.unravel_index(full.reshape(-1, len(units)).argmax(axis=0), full.shape[:2])
    return {"hue_curve": curves.hue.mean(axis=1), "orientation_curve": full[:, f_best, units],
            "frequency_curve": full[o_best, :, units].T, "contrast_curve": curves.grating[:, o_best, f_best, units],
            "best": np.stack([o_best, f_best])}


def _indices(curves: Curves, stimuli: Stimuli, shuffles: int) -> dict[str, np.ndarray]:
    steps = unit_curves(curves)
    best = steps.pop("best")
    orientation, selectivity = circular(steps["orientation_curve"], stimuli.orientations, 180.0)
    octaves = np.log2(stimuli.frequencies)
    bandwidth = np.array([half_height_width(np.clip(c, 0, None), octaves) for c in steps["frequency_curve"].T])
    hue_curve = steps["hue_curve"]
    hue, _ = circular(hue_curve - hue_curve.mean(axis=0), stimuli.hues, 360.0)
    contrast = steps["contrast_curve"]
    return {
        "colour_selectivity": colour_selectivity(curves.hue),
        "colour_selectivity_chance": shuffled_selectivity(curves.hue, shuffles),
        "preferred_hue": hue,
        "preferred_orientation": orientation,
        "orientation_selectivity": selectivity,
        "preferred_frequency": stimuli.frequencies[best[1]],
        "frequency_bandwidth": bandwidth,
        "contrast_c50": np.array([_c50(contrast[:, u], stimuli.contrasts) for u in range(contrast.shape[1])]),
        "contrast_saturation": _saturation(contrast),
        **steps,
    }


def _c50(response: np.ndarray, contrasts: np.ndarray) -> float:
    """The contrast where `response` first reaches half its rise over the lowest contrast's."""
    base = response[0]
    top = response.max() - base
    if top <= 0:
        return float("nan")
    above = response - base
    k = int(np.argmax(above >= top / 2))
    if k == 0:
        return float(contrasts[0])
    return float(np.interp(top / 2, [above[k - 1], above[k]], [contrasts[k - 1], contrasts[k]]))


def _saturation(contrast: np.ndarray) -> np.ndarray:
    top = contrast.max(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(top > 0, contrast[-1] / np.where(top > 0, top, 1), np.nan)
