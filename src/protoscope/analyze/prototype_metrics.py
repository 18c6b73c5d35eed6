"""Prototype metrics: how diverse a layer's prototypes are, how fast they change, how reliably they re-evolve.

For each run, repeat, epoch, layer, space and distance:

* **diversity** — the mean distance between the prototypes of two different units of the layer;
* **change** (rate of change) — the distance between a unit's prototype at epoch e and at the
  next studied epoch, averaged over units; stored at epoch e (the last epoch has none);
* **consistency** (re-evolution) — the distance between a unit's prototypes from two repeats
  (independent seeds) at the same epoch, averaged over units and over pairs of repeats; lower
  means more consistent. Its `repeat` is empty in the table.

Before any comparison each prototype is multiplied by its receptive-field mask (the
layer's, or the unit's when stored), as in the seed; a mask that is all zero or missing
(the Gaussian fit found nothing) would make every prototype blank and every distance
zero, so that prototype is compared unmasked instead, and `masked_fraction` says how
many were. Silent units (no image excited them) are left out by default.

Distances: ``mse`` (mean squared difference per dimension) and ``cosine`` (1 - cosine
similarity; two all-zero vectors are identical, a zero vector is orthogonal to the rest).
They are tensor programs on the device: a pairwise matrix per (epoch, repeat) from one
matmul, paired distances elementwise; no Python loop runs over pairs of units.

Where results go (the analyze stage, `stages/prototype_metrics.py`): the averages in the tidy
metrics table (stage ``analyze``, one Parquet file per run, layer and space); the per-unit values
(a unit's diversity value is its mean distance to the other units), to find the units that change
most, in `store.unit_metrics`.
"""

from __future__ import annotations

import torch

DISTANCES = ("mse", "cosine")


# ---------------------------------------------------------------- masks


def usable_masks(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., S, S) masks -> (masks with each unusable one replaced by ones, which were usable (...)).

    Unusable: not finite anywhere (never written) or zero everywhere (nothing to see through)."""
    flat = masks.flatten(-2)
    ok = torch.isfinite(flat).all(-1) & (flat.nan_to_num(0).amax(-1) > 0)
    return torch.where(ok[..., None, None], masks.nan_to_num(0), torch.ones_like(masks)), ok


def masked_images(prototypes: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
    """uint8 (..., S, S, 3) prototypes -> float (..., 3, S, S) in [0, 1], times the mask when given.

    `masks` broadcasts against (..., S, S): (S, S) for one per layer, (U, S, S) for one per unit."""
    x = prototypes.movedim(-1, -3).float() / 255
    if masks is None:
        return x
    return x * usable_masks(masks.to(x.device, x.dtype))[0].unsqueeze(-3)


# ---------------------------------------------------------------- distances


def _check(distance: str) -> None:
    if distance not in DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; use one of {DISTANCES}")


def pairwise(x: torch.Tensor, distance: str) -> torch.Tensor:
    """(..., N, D) -> (..., N, N): the distance between every two rows, from one batched matmul.

    MSE as |a|^2 + |b|^2 - 2 a.b after subtracting the rows' mean (distances do not change, and the
    cancellation error of the expansion shrinks with the norms); the diagonal is exactly zero."""
    _check(distance)
    x = x.float()
    n, dims = x.shape[-2], x.shape[-1]
    if distance == "mse":
        x = x - x.mean(-2, keepdim=True)
        sq = (x * x).sum(-1)
        d = (sq[..., :, None] + sq[..., None, :] - 2 * (x @ x.transpose(-1, -2))).clamp_min(0) / dims
    else:
        norm = x.norm(dim=-1)
        zero = norm == 0
        unit = x / norm.clamp_min(torch.finfo(x.dtype).tiny)[..., None]
        sim = unit @ unit.transpose(-1, -2) + (zero[..., :, None] & zero[..., None, :])
        d = (1 - sim).clamp(0, 2)
    return d * (1 - torch.eye(n, device=x.device, dtype=d.dtype))


def paired(a: torch.Tensor, b: torch.Tensor, distance: str) -> torch.Tensor:
    """(..., D), (..., D) -> (...): the distance between corresponding rows (identical rows give 0)."""
    _check(distance)
    a, b = a.float(), b.float()
    if distance == "mse":
        return ((a - b) ** 2).mean(-1)
    na, nb = a.norm(dim=-1), b.norm(dim=-1)
    sim = (a * b).sum(-1) / (na * nb).clamp_min(torch.finfo(a.dtype).tiny)
    same = (a == b).all(-1)  # exactly 0 for identical rows (zero vectors included), not 1 - 0.9999999
    return torch.where(same, torch.zeros_like(sim), (1 - sim).clamp(0, 2))


def _nanmean(values: torch.Tensor, valid: torch.Tensor, dim: int = -1) -> torch.Tensor:
    count = valid.sum(dim)
    total = torch.where(valid, values, torch.zeros_like(values)).sum(dim)
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, float("nan")))


# ---------------------------------------------------------------- metrics


def diversity(x: torch.Tensor, distance: str, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean distance between the prototypes of two different units.

    x: (..., U, D); valid: (..., U) bool (default: all). Returns (value (...), per unit (..., U)), a unit's
    value being its mean distance to the other valid units; NaN where fewer than two units are valid.
    """
    valid = torch.ones(x.shape[:-1], dtype=torch.bool, device=x.device) if valid is None else valid.to(x.device)
    x = torch.where(valid[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))  # NaN rows stay out
    d = pairwise(x, distance)
    w = valid.to(d.dtype)
    others = w.sum(-1, keepdim=True) - w  # how many valid units besides this one
    per_unit = (d @ w[..., None])[..., 0] / others.clamp_min(1)
    per_unit = torch.where(valid & (others > 0), per_unit, torch.full_like(per_unit, float("nan")))
    return _nanmean(per_unit, per_unit.isfinite()), per_unit


def change(a: torch.Tensor, b: torch.Tensor, distance: str, valid_a: torch.Tensor | None = None,
           valid_b: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance between each unit's prototypes at two epochs. a, b: (..., U, D). Returns (mean over units, per unit)."""
    per_unit = paired(a, b, distance)
    valid = torch.ones_like(per_unit, dtype=torch.bool)
    for v in (valid_a, valid_b):
        if v is not None:
            valid = valid & v.to(per_unit.device)
    per_unit = torch.where(valid, per_unit, torch.full_like(per_unit, float("nan")))
    return _nanmean(per_unit, valid), per_unit


def consistency(x: torch.Tensor, distance: str, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance between each unit's prototypes from different repeats. x: (R, U, D), valid: (R, U).

    Every pair of repeats (r < s) at once; returns (mean over pairs of the mean over units, per unit
    (U,) averaged over pairs). NaN with fewer than two repeats."""
    R = x.shape[0]
    valid = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if valid is None else valid.to(x.device)
    r, s = torch.triu_indices(R, R, offset=1, device=x.device)
    if len(r) == 0:
        nan = torch.full((x.shape[1],), float("nan"), device=x.device)
        return nan[0], nan
    per_pair = change(x[r], x[s], distance, valid[r], valid[s])  # (P,), (P, U)
    value = _nanmean(per_pair[0], per_pair[0].isfinite(), 0)
    return value, _nanmean(per_pair[1], per_pair[1].isfinite(), 0)


