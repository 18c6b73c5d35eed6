"""Objectives as values: the base class and the arithmetic that combines them.

Kept apart from the concrete objectives (`objectives.py`) because this is the
part every objective shares: the row-count check that stops a wrong batch from
broadcasting silently, and ``a + 2 * b``, ``-a``, ``a / 4`` building a flat
`LinearCombination` that still describes itself readably.
"""

from __future__ import annotations

import numbers
from typing import Sequence

from torch import Tensor

__all__ = ["Objective", "LinearCombination"]


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


def _fmt_coef(c: float) -> str:
    return f"{c:g}"


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
