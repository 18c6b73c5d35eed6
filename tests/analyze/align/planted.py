"""Planted-truth activations: nets whose true alignment is known."""

from __future__ import annotations

import numpy as np


def permuted_pair(n: int = 3000, units: int = 12, noise: float = 0.3, seed: int = 0):
    """Net A: correlated ReLU units; net B: A's units permuted, plus noise. Returns (a, b, perm)."""
    rng = np.random.default_rng(seed)
    mix = np.eye(units) + 0.3 * rng.standard_normal((units, units))
    a = np.maximum(rng.standard_normal((n, units)) @ mix + 0.3, 0)
    perm = rng.permutation(units)
    b = a[:, perm] + noise * rng.standard_normal((n, units))
    return a, b, perm


def grouped_pair(n: int = 4000, groups: int = 4, size: int = 3, noise: float = 0.05, seed: int = 0):
    """Net A: independent units in `groups` groups; each B unit mixes only its group's A units.

    Returns (a, b, group of each A unit, group of each B unit).
    """
    rng = np.random.default_rng(seed)
    units = groups * size
    a = rng.standard_normal((n, units))
    group = np.repeat(np.arange(groups), size)
    mix = np.zeros((units, units))
    for g in range(groups):
        idx = np.flatnonzero(group == g)
        mix[np.ix_(idx, idx)] = rng.uniform(0.5, 1.5, (size, size))
    b = a @ mix + noise * rng.standard_normal((n, units))
    return a, b, group, group.copy()
