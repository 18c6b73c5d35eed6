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
broadcasting.

Spatial convention: "centre" is position ``((H - 1) // 2, (W - 1) // 2)``; for
even ``H``/``W`` that is the upper-left of the four central pixels (the
seed's convention for block outputs).
"""

from __future__ import annotations

import numbers
from typing import Iterable, Literal, Sequence

import torch
from torch import Tensor

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


def _check_rows(obj: Objective, acts: Tensor) -> None:
    rows = obj.rows
    if not isinstance(acts, Tensor):
        raise ValueError(f"{obj.describe()} expects an activation tensor, got {type(acts).__name__}")
    if acts.ndim < 2:
        raise ValueError(f"{obj.describe()} expects activations [batch, ...], got shape {tuple(acts.shape)}")
    if acts.shape[0] != rows:
        raise ValueError(
            f"{obj.describe()} expects {rows} rows (one per unit) but the activations have "
            f"{acts.shape[0]} (shape {tuple(acts.shape)})"
        )


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


def _fmt_coef(c: float) -> str:
    return f"{c:g}"


# --------------------------------------------------------------------------
# Algebra
# --------------------------------------------------------------------------


class Objective:
    """A batched objective: ``obj(acts) -> Tensor[rows]``, higher is better.

    Subclasses implement :meth:`score` and :meth:`describe` and set
    ``rows``; ``__call__`` checks the batch size first.  Arithmetic returns
    a :class:`LinearCombination`.
    """

    rows: int

    def score(self, acts: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def select(self, index: Sequence[int] | Tensor | slice) -> Objective:
        """The same objective restricted to some rows (to run units in chunks)."""
        raise NotImplementedError

    def score_all(self, acts: Tensor) -> Tensor:
        """Every image against every row's target: ``[B_images, rows]``.

        Why: one forward pass of a shared pool of random images then scores
        each image for *all* units at once (the engine's search phase).
        """
        raise NotImplementedError

    def __call__(self, acts: Tensor) -> Tensor:
        _check_rows(self, acts)
        return self.score(acts)

    def __repr__(self) -> str:
        return self.describe()

    # -- arithmetic ------------------------------------------------------
    def _as_combination(self) -> LinearCombination:
        return LinearCombination([(1.0, self)])

    def __add__(self, other: Objective | float) -> LinearCombination:
        return self._as_combination()._add(other, 1.0)

    def __radd__(self, other: Objective | float) -> LinearCombination:
        # Makes ``sum([a, b, c])`` work (it starts from 0).
        return self._as_combination()._add(other, 1.0)

    def __sub__(self, other: Objective | float) -> LinearCombination:
        return self._as_combination()._add(other, -1.0)

    def __rsub__(self, other: Objective | float) -> LinearCombination:
        return (-self)._add(other, 1.0)

    def __mul__(self, c: float) -> LinearCombination:
        if isinstance(c, Objective):
            raise TypeError("objectives can be scaled by numbers, not multiplied together")
        if not isinstance(c, numbers.Real):
            return NotImplemented
        return self._as_combination()._scale(float(c))

    __rmul__ = __mul__

    def __truediv__(self, c: float) -> LinearCombination:
        if not isinstance(c, numbers.Real):
            return NotImplemented
        if c == 0:
            raise ZeroDivisionError("objective divided by zero")
        return self._as_combination()._scale(1.0 / float(c))

    def __neg__(self) -> LinearCombination:
        return self._as_combination()._scale(-1.0)

    def __pos__(self) -> Objective:
        return self


class LinearCombination(Objective):
    """``sum_k c_k * obj_k + constant`` – what objective arithmetic builds.

    Kept flat (a list of terms) so descriptions stay readable, e.g.
    ``ChannelCentre(units=[0, 1]) - 0.5 * ChannelMean(units=[0, 1])``.
    """

    def __init__(self, terms: list[tuple[float, Objective]], constant: float = 0.0) -> None:
        if not terms:
            raise ValueError("a combination needs at least one objective")
        rows = {obj.rows for _, obj in terms}
        if len(rows) != 1:
            desc = ", ".join(f"{obj.describe()} has {obj.rows}" for _, obj in terms)
            raise ValueError(f"cannot combine objectives with different row counts: {desc}")
        self.terms = list(terms)
        self.constant = float(constant)
        self.rows = rows.pop()

    def _add(self, other: Objective | float, sign: float) -> LinearCombination:
        if isinstance(other, Objective):
            theirs = other._as_combination() if not isinstance(other, LinearCombination) else other
            terms = self.terms + [(sign * c, o) for c, o in theirs.terms]
            return LinearCombination(terms, self.constant + sign * theirs.constant)
        if isinstance(other, numbers.Real):
            return LinearCombination(self.terms, self.constant + sign * float(other))
        return NotImplemented

    def _scale(self, c: float) -> LinearCombination:
        return LinearCombination([(c * k, o) for k, o in self.terms], c * self.constant)

    def _as_combination(self) -> LinearCombination:
        return self

    def score(self, acts: Tensor) -> Tensor:
        scores = [obj(acts) if c == 1.0 else c * obj(acts) for c, obj in self.terms]
        total = scores[0]
        for s in scores[1:]:
            total = total + s
        return total + self.constant if self.constant else total

    def select(self, index: Sequence[int] | Tensor | slice) -> LinearCombination:
        return LinearCombination([(c, o.select(index)) for c, o in self.terms], self.constant)

    def score_all(self, acts: Tensor) -> Tensor:
        total = sum(c * o.score_all(acts) for c, o in self.terms)
        return total + self.constant if self.constant else total

    def describe(self) -> str:
        parts: list[str] = []
        for c, obj in self.terms:
            sign = "-" if c < 0 else "+"
            mag = abs(c)
            text = obj.describe() if mag == 1.0 else f"{_fmt_coef(mag)} * {obj.describe()}"
            parts.append(f"{sign} {text}")
        if self.constant:
            parts.append(f"{'-' if self.constant < 0 else '+'} {_fmt_coef(abs(self.constant))}")
        out = " ".join(parts)
        return out[2:] if out.startswith("+ ") else "-" + out[2:]


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
    """Channel ``units[i]`` at the centre pixel ``((H-1)//2, (W-1)//2)``.

    Why the centre: a unit at one position has a well-defined receptive field,
    so its prototype is centred and comparable across training checkpoints.
    For even H the "centre" is the upper-left of the four central pixels.
    """

    def score(self, acts: Tensor) -> Tensor:
        self._need_4d(acts)
        return gather_units(acts, self._units_on(acts.device), "centre")

    def score_all(self, acts: Tensor) -> Tensor:
        self._need_4d(acts)
        y, x = centre_index(acts.shape[2], acts.shape[3])
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
