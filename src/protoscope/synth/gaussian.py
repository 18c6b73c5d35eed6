"""A rotated 2-D Gaussian fitted to a receptive-field map, and the [0, 1] mask made from it.

Prototypes are compared after weighting by where the unit looks; a fitted
Gaussian turns a noisy gradient map into a smooth weighting, and falls back to
no weighting at all (a mask of ones) when no Gaussian fits.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .crop import _size2

__all__ = ["GaussianFit", "fit_gaussian", "gaussian_mask", "rf_mask"]


@dataclass(frozen=True)
class GaussianFit:
    """A rotated 2-D Gaussian plus offset fitted to a receptive-field map.

    ``map(y, x) ≈ offset + amplitude * exp(-u²/(2 sigma_major²) - v²/(2 sigma_minor²))``
    where ``(u, v)`` are the coordinates of ``(x - centre_x, y - centre_y)``
    rotated by ``theta`` (radians, the major axis' angle from the +x/column
    axis towards +y/row, in ``(-pi/2, pi/2]``); ``sigma_major >= sigma_minor``.
    Pixel ``(i, j)`` has coordinates ``(y, x) = (i, j)``.

    ``success=False`` means no Gaussian could be fitted (an all-zero or
    constant map, a non-positive peak, or the optimizer failed); the
    parameters are then the moment estimates (or infinite sigmas for a map
    with no peak) and :func:`gaussian_mask` returns all ones: no spatial
    weighting, the conservative choice.  No field is ever NaN.
    """

    amplitude: float
    centre_y: float
    centre_x: float
    sigma_major: float
    sigma_minor: float
    theta: float
    offset: float
    success: bool


def _gauss2d(coords, amp, y0, x0, s1, s2, theta, off):
    y, x = coords
    dx, dy = x - x0, y - y0
    c, s = np.cos(theta), np.sin(theta)
    u = c * dx + s * dy
    v = -s * dx + c * dy
    return off + amp * np.exp(-0.5 * ((u / s1) ** 2 + (v / s2) ** 2))


def _canonical(s1: float, s2: float, theta: float) -> tuple[float, float, float]:
    """Major sigma first, angle in (-pi/2, pi/2]."""
    s1, s2 = abs(s1), abs(s2)
    if s2 > s1:
        s1, s2, theta = s2, s1, theta + math.pi / 2
    theta = math.fmod(theta, math.pi)
    if theta <= -math.pi / 2:
        theta += math.pi
    elif theta > math.pi / 2:
        theta -= math.pi
    return s1, s2, theta


def _moments(z: np.ndarray) -> tuple[float, float, float, float, float]:
    """Centre and covariance of a non-negative weight map -> (y0, x0, s1, s2, theta)."""
    hh, ww = z.shape
    yy, xx = np.mgrid[0:hh, 0:ww].astype(np.float64)
    tot = z.sum()
    y0, x0 = (z * yy).sum() / tot, (z * xx).sum() / tot
    cyy = (z * (yy - y0) ** 2).sum() / tot
    cxx = (z * (xx - x0) ** 2).sum() / tot
    cxy = (z * (xx - x0) * (yy - y0)).sum() / tot
    evals, evecs = np.linalg.eigh(np.array([[cxx, cxy], [cxy, cyy]]))
    s1 = math.sqrt(max(evals[1], 0.0)) or 0.5
    s2 = math.sqrt(max(evals[0], 0.0)) or 0.5
    theta = math.atan2(evecs[1, 1], evecs[0, 1])
    s1, s2, theta = _canonical(max(s1, 0.3), max(s2, 0.3), theta)
    return float(y0), float(x0), s1, s2, theta


def fit_gaussian(rf: Tensor | np.ndarray) -> GaussianFit:
    """Fit a rotated 2-D Gaussian plus offset to an (H, W) map with ``scipy.optimize.curve_fit``.

    Initial guesses come from the map's moments (above its minimum), so the
    fit starts at the right centre, spread and orientation.  The map is
    scaled to max |value| 1 for conditioning and amplitude/offset scaled
    back.  See :class:`GaussianFit` for the failure convention.
    """
    from scipy.optimize import OptimizeWarning, curve_fit

    z = rf.detach().double().cpu().numpy() if isinstance(rf, Tensor) else np.asarray(rf, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"fit_gaussian expects an (H, W) map, got shape {z.shape}")
    if not np.isfinite(z).all():
        raise ValueError("fit_gaussian: the map has NaN or infinite values")
    hh, ww = z.shape
    inf = math.inf
    lo, hi = float(z.min()), float(z.max())
    scale = max(abs(lo), abs(hi))
    if hi - lo <= 1e-12 * max(scale, 1e-300) or scale == 0.0:
        return GaussianFit(0.0, (hh - 1) / 2, (ww - 1) / 2, inf, inf, 0.0, lo, False)
    zn = z / scale
    base = zn - zn.min()
    y0, x0, s1, s2, theta = _moments(base)
    amp0, off0 = float(base.max()), float(zn.min())
    moment_fit = GaussianFit(amp0 * scale, y0, x0, s1, s2, theta, off0 * scale, False)
    if hh * ww < 8:  # fewer pixels than parameters: no least-squares fit
        return moment_fit
    yy, xx = np.mgrid[0:hh, 0:ww].astype(np.float64)
    coords = np.vstack([yy.ravel(), xx.ravel()])
    big = 10.0 * max(hh, ww)
    p0 = [amp0, y0, x0, s1, s2, theta, off0]
    lower = [0.0, -big, -big, 0.05, 0.05, -np.pi, -np.inf]
    upper = [np.inf, big + hh, big + ww, big, big, np.pi, np.inf]
    p0 = [float(np.clip(v, lo_, up_)) for v, lo_, up_ in zip(p0, lower, upper)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            popt, _ = curve_fit(_gauss2d, coords, zn.ravel(), p0=p0, bounds=(lower, upper), maxfev=20000)
    except (RuntimeError, ValueError):
        return moment_fit
    if not np.isfinite(popt).all() or popt[0] <= 0:
        return moment_fit
    amp, fy, fx, f1, f2, fth, off = (float(v) for v in popt)
    f1, f2, fth = _canonical(f1, f2, fth)
    return GaussianFit(amp * scale, fy, fx, f1, f2, fth, off * scale, True)


def gaussian_mask(fit: GaussianFit, size: int | Sequence[int]) -> Tensor:
    """The fitted Gaussian without offset on an (H, W) grid, scaled so its maximum is exactly 1.

    Computed in the log domain (so a centre far off the grid still gives a
    finite mask with max 1, never 0/0).  An unsuccessful fit gives all ones.
    """
    h, w = _size2(size)
    if not fit.success or not (math.isfinite(fit.sigma_major) and math.isfinite(fit.sigma_minor)):
        return torch.ones(h, w)
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    dx, dy = xx - fit.centre_x, yy - fit.centre_y
    c, s = math.cos(fit.theta), math.sin(fit.theta)
    u = c * dx + s * dy
    v = -s * dx + c * dy
    logg = -0.5 * ((u / fit.sigma_major) ** 2 + (v / fit.sigma_minor) ** 2)
    return torch.exp(logg - logg.max()).float()


def rf_mask(rf: Tensor | np.ndarray) -> Tensor:
    """``gaussian_mask(fit_gaussian(rf), rf.shape)``: the receptive-field mask of a map."""
    shape = tuple(rf.shape)
    return gaussian_mask(fit_gaussian(rf), shape)
