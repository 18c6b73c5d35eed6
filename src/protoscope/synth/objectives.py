"""Batched objectives: one score per row, row ``i`` scored on its own unit.

Prototype synthesis optimises a whole layer at once: the image batch has one
row per unit, and an objective turns the target layer's activations for that
batch into a vector of scores (higher is better), ``scores[i]`` reading only
unit ``units[i]`` of row ``i``.  As in lucent's ``objectives.py``, objectives
are values: they add, subtract and scale (``a + 2 * b``, ``-a``, ``a / 4``)
into new objectives, and describe themselves for logs and figure titles.
Every term of a combination reads the same activation tensor (the target
layer's), and every objective knows how many ``rows`` it expects, so a batch
of the wrong size fails with a clear message instead of silently
broadcasting.  The base class and that algebra live in `objective_algebra.py`
(re-exported here); this module holds the objectives themselves.

Spatial convention: without a cell of its own (``ChannelCentre(units, at=...)``),
"centre" is position ``((H - 1) // 2, (W - 1) // 2)``, the map's middle cell (for
even ``H``/``W`` the upper-left of the four central pixels: the seed's
convention). The engine passes the cell whose receptive field is centred in the
image instead (`position.unit_position`).
"""

from __future__ import annotations

from typing import Iterable, Literal, Sequence

import torch
from torch import Tensor

from .objective_algebra import LinearCombination, Objective

__all__ = [
    "Objective",
    "ChannelCentre",
    "ChannelMean",
    "Neuron",
    "Direction",
    "DirectionCosine",
    "LinearCombination",
    "centre_index",
    "gather_units",
    "as_units",
]

Position = Literal["mean", "centre"]


# --------------------------------------------------------------------------
# Vectorized helpers
# --------------------------------------------------------------------------


def centre_index(h: int, w: int) -> tuple[int, int]:
    """The centre convention: ``((h - 1) // 2, (w - 1) // 2)``."""
    return (h - 1) // 2, (w - 1) // 2


def as_units(units: Sequence[int] | Tensor | Iterable[int]) -> Tensor:
    """Validate unit indices into a 1-D CPU int64 tensor (one per row)."""
    if isinstance(units, Tensor):
        t = units.detach().cpu()
    else:
        try:
            t = torch.as_tensor(list(units) if not hasattr(units, "__array__") else units)
        except (TypeError, ValueError) as err:
            raise ValueError(f"units must be a sequence of integer indices: {err}") from err
    if t.ndim != 1:
        raise ValueError(f"units must be 1-D (one index per row), got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError("units must not be empty")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"units must be integers, got dtype {t.dtype}")
    t = t.to(torch.int64)
    if (t < 0).any():
        raise ValueError(f"units must be non-negative, got {t[t < 0][:5].tolist()}")
    return t


def _check_units(name: str, top: int, n: int, what: str) -> None:
    if top >= n:
        raise ValueError(f"{name}: unit index {top} out of range for {n} {what}")


def gather_units(acts: Tensor, units: Tensor, position: Position | None = None) -> Tensor:
    """Row ``i``'s unit ``units[i]``, for all rows in one indexing op.

    ``acts`` is ``[B, C, ...]``; returns ``[B, ...]`` (the unit's map) when
    ``position`` is None, ``[B]`` for ``"centre"`` (the centre pixel of a
    ``[B, C, H, W]`` map) or ``"mean"`` (mean over all trailing dims).  No
    Python loop over rows, so it costs the same for 8 or 2048 units.
    """
    if acts.ndim < 2 or units.ndim != 1 or units.shape[0] != acts.shape[0]:
        raise ValueError(
            f"gather_units needs acts [B, C, ...] and units [B]; got {tuple(acts.shape)} and {tuple(units.shape)}"
        )
    units = units.to(acts.device)
    rows = torch.arange(acts.shape[0], device=acts.device)
    if position == "centre":
        if acts.ndim != 4:
            raise ValueError(f"position='centre' needs activations [B, C, H, W], got {tuple(acts.shape)}")
        y, x = centre_index(acts.shape[2], acts.shape[3])
        return acts[rows, units, y, x]
    maps = acts[rows, units]
    if position is None:
        return maps
    if position == "mean":
        return maps.reshape(maps.shape[0], -1).mean(dim=1)
    raise ValueError(f"position must be 'mean', 'centre' or None, got {position!r}")


def _short_list(values: Sequence[int], limit: int = 6) -> str:
    values = list(values)
    if len(values) <= limit:
        return "[" + ", ".join(str(v) for v in values) + "]"
    head = ", ".join(str(v) for v in values[:limit])
    return f"[{head}, ... {len(values) - limit} more]"


# --------------------------------------------------------------------------
# Unit objectives
# --------------------------------------------------------------------------


def _select_rows(t: Tensor, index: Sequence[int] | Tensor | slice) -> Tensor:
    if isinstance(index, slice):
        out = t[index]
    else:
        idx = torch.as_tensor(index, dtype=torch.int64, device=t.device)
        if idx.ndim != 1:
            raise ValueError(f"select() needs a 1-D row index, got shape {tuple(idx.shape)}")
        out = t[idx]
    if out.shape[0] == 0:
        raise ValueError("select() would leave no rows")
    return out


class _UnitObjective(Objective):
    """Shared plumbing for objectives defined by one unit index per row."""

    def __init__(self, units: Sequence[int] | Tensor) -> None:
        self.units = as_units(units)
        self.rows = int(self.units.shape[0])
        self._max_unit = int(self.units.max())
        self._on: dict[torch.device, Tensor] = {}

    def _units_on(self, device: torch.device) -> Tensor:
        # Cache per device so a GPU search does not copy the indices each step.
        if device not in self._on:
            self._on[device] = self.units.to(device)
        return self._on[device]

    def select(self, index: Sequence[int] | Tensor | slice) -> _UnitObjective:
        return type(self)(_select_rows(self.units, index))

    def describe(self) -> str:
        return f"{type(self).__name__}(units={_short_list(self.units.tolist())})"

    def _need_4d(self, acts: Tensor) -> None:
        if acts.ndim != 4:
            raise ValueError(
                f"{type(self).__name__} needs conv activations [B, C, H, W], got shape {tuple(acts.shape)}"
                + ("; use Neuron for fully connected layers" if acts.ndim == 2 else "")
            )
        _check_units(type(self).__name__, self._max_unit, acts.shape[1], "channels")


class ChannelCentre(_UnitObjective):
    """Channel ``units[i]`` at one map cell: `at` = (y, x), or the middle cell ``((H-1)//2, (W-1)//2)``.

    Why one cell: a unit at one position has a well-defined receptive field,
    so its prototype is placed the same way at every training checkpoint.
    The engine passes the cell whose receptive field is centred in the image
    (`position.unit_position`); the middle cell is that only for some nets.
    """

    def __init__(self, units: Sequence[int] | Tensor, at: tuple[int, int] | None = None) -> None:
        super().__init__(units)
        self.at = None if at is None else (int(at[0]), int(at[1]))

    def select(self, index: Sequence[int] | Tensor | slice) -> ChannelCentre:
        return ChannelCentre(_select_rows(self.units, index), self.at)

    def _cell(self, acts: Tensor) -> tuple[int, int]:
        self._need_4d(acts)
        if self.at is None:
            return centre_index(acts.shape[2], acts.shape[3])
        if not (0 <= self.at[0] < acts.shape[2] and 0 <= self.at[1] < acts.shape[3]):
            raise ValueError(f"ChannelCentre: cell {self.at} is outside the {acts.shape[2]}x{acts.shape[3]} map")
        return self.at

    def score(self, acts: Tensor) -> Tensor:
        y, x = self._cell(acts)
        rows = torch.arange(acts.shape[0], device=acts.device)
        return acts[rows, self._units_on(acts.device), y, x]

    def score_all(self, acts: Tensor) -> Tensor:
        y, x = self._cell(acts)
        return acts[:, :, y, x][:, self._units_on(acts.device)]


class ChannelMean(_UnitObjective):
    """Channel ``units[i]`` averaged over all positions (lucent's ``channel``,
    up to the sign and the mean instead of the sum)."""

    def score(self, acts: Tensor) -> Tensor:
        self._need_4d(acts)
        return gather_units(acts, self._units_on(acts.device), "mean")

    def score_all(self, acts: Tensor) -> Tensor:
        self._need_4d(acts)
        return acts.mean(dim=(2, 3))[:, self._units_on(acts.device)]


class Neuron(_UnitObjective):
    """One scalar activation per row: feature ``units[i]`` of a 2-D ``[B, F]``
    layer, or flat index ``units[i]`` into each row of a higher-dimensional
    activation (row-major over ``C, H, W``)."""

    def score(self, acts: Tensor) -> Tensor:
        flat = acts.reshape(acts.shape[0], -1)
        _check_units("Neuron", self._max_unit, flat.shape[1], "features per row")
        return gather_units(flat, self._units_on(acts.device))

    def score_all(self, acts: Tensor) -> Tensor:
        flat = acts.reshape(acts.shape[0], -1)
        _check_units("Neuron", self._max_unit, flat.shape[1], "features per row")
        return flat[:, self._units_on(acts.device)]


class Direction(Objective):
    """Dot product of the activation vector with one direction per row.

    ``directions`` is ``[B, C]``; row ``i`` scores ``<directions[i], a_i>``
    where ``a_i`` is the channel vector averaged over space
    (``position="mean"``) or at the centre pixel (``"centre"``); for 2-D
    ``[B, C]`` activations ``position`` is irrelevant.  Why: activation atlases
    render the average activation vector of a cluster, i.e. a direction
    rather than a single unit.  Not normalized: scale the directions yourself
    if rows should be comparable.
    """

    def __init__(self, directions: Tensor, position: Position = "mean") -> None:
        if not isinstance(directions, Tensor):
            directions = torch.as_tensor(directions)
        if directions.ndim != 2 or directions.shape[0] == 0:
            raise ValueError(f"Direction needs directions [B, C] (one per row), got shape {tuple(directions.shape)}")
        if not directions.is_floating_point():
            directions = directions.float()
        if position not in ("mean", "centre"):
            raise ValueError(f"Direction position must be 'mean' or 'centre', got {position!r}")
        self.directions = directions.detach()
        self.position: Position = position
        self.rows = int(directions.shape[0])

    def _vectors(self, acts: Tensor) -> Tensor:
        """[B, C]: the centre position's or the spatial mean's channel vector (2-D activations as they are)."""
        if acts.ndim == 4:
            y, x = centre_index(acts.shape[2], acts.shape[3])
            vec = acts[:, :, y, x] if self.position == "centre" else acts.mean(dim=(2, 3))
        elif acts.ndim == 2:
            vec = acts
        else:
            raise ValueError(f"Direction needs activations [B, C, H, W] or [B, C], got shape {tuple(acts.shape)}")
        if vec.shape[1] != self.directions.shape[1]:
            raise ValueError(
                f"Direction has {self.directions.shape[1]}-d directions but the layer has {vec.shape[1]} channels"
            )
        return vec

    def score(self, acts: Tensor) -> Tensor:
        vec = self._vectors(acts)
        return (vec * self.directions.to(device=vec.device, dtype=vec.dtype)).sum(dim=1)

    def score_all(self, acts: Tensor) -> Tensor:
        vec = self._vectors(acts)
        return vec @ self.directions.to(device=vec.device, dtype=vec.dtype).T

    def select(self, index: Sequence[int] | Tensor | slice) -> Direction:
        return Direction(_select_rows(self.directions, index), self.position)

    def describe(self) -> str:
        return f"Direction(rows={self.rows}, dim={self.directions.shape[1]}, position={self.position!r})"


class DirectionCosine(Direction):
    """``dot(a, v) · max(0.1, cos(a, v))^power``: a direction, rewarded for the angle as well.

    Plain ``dot(a, v)`` is maximised by any large activation with a positive component along `v`;
    the cosine factor asks for an activation that points *along* `v` (lucid's activation atlases
    use this with power 2 or 4), and the floor of 0.1 keeps a gradient where the angle starts wide.
    """

    def __init__(self, directions: Tensor, position: Position = "mean", power: float = 2.0) -> None:
        super().__init__(directions, position)
        if power < 0:
            raise ValueError(f"DirectionCosine power must be >= 0, got {power}")
        self.power = float(power)

    def _shaped(self, dot: Tensor, vec_norm: Tensor, dir_norm: Tensor) -> Tensor:
        cos = dot / (vec_norm * dir_norm).clamp_min(1e-8)
        return dot * cos.clamp_min(0.1) ** self.power

    def score(self, acts: Tensor) -> Tensor:
        vec = self._vectors(acts)
        d = self.directions.to(device=vec.device, dtype=vec.dtype)
        return self._shaped((vec * d).sum(dim=1), vec.norm(dim=1), d.norm(dim=1))

    def score_all(self, acts: Tensor) -> Tensor:
        vec = self._vectors(acts)
        d = self.directions.to(device=vec.device, dtype=vec.dtype)
        return self._shaped(vec @ d.T, vec.norm(dim=1)[:, None], d.norm(dim=1)[None, :])

    def select(self, index: Sequence[int] | Tensor | slice) -> DirectionCosine:
        return DirectionCosine(_select_rows(self.directions, index), self.position, self.power)

    def describe(self) -> str:
        return (f"DirectionCosine(rows={self.rows}, dim={self.directions.shape[1]}, position={self.position!r}, "
                f"power={self.power:g})")
