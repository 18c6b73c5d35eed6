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


def shared_causes_pair(n: int = 2000, units: int = 32, causes: int = 8, noise: float = 0.1, seed: int = 0):
    """Two nets whose ReLU units all read the same few hidden causes. Returns (a, b).

    Why: A's units are then strongly correlated, as in real layers, so the lasso from A to B is
    ill-conditioned (here corr(A, A) has a condition number near 200) and its solvers need many
    iterations; the independent units of `grouped_pair` converge in a few steps and would not
    show whether an iteration budget is enough.
    """
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, causes))
    a = np.maximum(z @ rng.standard_normal((causes, units)) + noise * rng.standard_normal((n, units)), 0)
    b = np.maximum(z @ rng.standard_normal((causes, units)) + noise * rng.standard_normal((n, units)), 0)
    return a, b
