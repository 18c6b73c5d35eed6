"""Translated digits: the width study's built-in task (the seed's translated-MNIST setting, offline).

scikit-learn's bundled 8×8 handwritten digits (1797 images, no download) are placed on a larger
blank canvas at one of `positions` × `positions` places on a lattice, with a pixel of jitter. The
**original task** is the place (which of the lattice positions: a shift class), the **new task** the
digit: a network trained to say where a digit is must keep what it is for a linear read-out to find
it, and wider networks were found to keep more (the seed's Figure 4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TranslatedDigits:
    images: np.ndarray  # float32 (N, 1, S, S) in [0, 1]
    shift: np.ndarray  # int64 (N,): the lattice position, the original task
    digit: np.ndarray  # int64 (N,): the digit, the new task


def translated_digits(n: int, canvas: int = 16, positions: int = 3, seed: int = 0) -> TranslatedDigits:
    """`n` digits on a `canvas` × `canvas` field, each at a random lattice position (±1 px)."""
    from sklearn.datasets import load_digits

    if canvas < 8 + 2:
        raise ValueError(f"canvas {canvas} too small for an 8-px digit with a pixel of jitter")
    digits = load_digits()
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(digits.images), n)
    lattice = np.linspace(1, canvas - 9, positions).round().astype(int)  # top-left corners, 1 px from the edge
    shift = rng.integers(0, positions * positions, n)
    jitter = rng.integers(-1, 2, (n, 2))
    images = np.zeros((n, 1, canvas, canvas), np.float32)
    for k in range(n):
        y = np.clip(lattice[shift[k] // positions] + jitter[k, 0], 0, canvas - 8)
        x = np.clip(lattice[shift[k] % positions] + jitter[k, 1], 0, canvas - 8)
        images[k, 0, y:y + 8, x:x + 8] = digits.images[pick[k]] / 16.0
    return TranslatedDigits(images, shift.astype(np.int64), digits.target[pick].astype(np.int64))
