"""The built-in real data set: scikit-learn's bundled handwritten digits (1,797 8×8 scans, no
download), drawn in colour.

Each image is one scan used as ink (its grey level, resampled smoothly), at a random scale and
shift, in a random foreground colour on a random background colour kept apart from it — the
nuisance of the built-in shapes, on real handwritten forms. Class = the digit; the colours carry
no label information, so a network that matches SimCLR views by colour learns little about the
digit: the shortcut colour jitter removes.

Splits are fixed: a seeded permutation of the scans gives `TRAIN_SCANS` for training (SimCLR and
the probes' training set) and the rest for testing (the probes' test set and the stimulus set of RSA
and alignment), so no network is probed on a scan it trained on. Every batch is a pure function of
(seed, epoch, step), so training resumes bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .shapes import ShapeStream, _seeded, colour_pairs

CLASSES = tuple(str(d) for d in range(10))
TRAIN_SCANS = 1297  # of 1797; the other 500 are held out


@lru_cache(maxsize=1)
def _scans() -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """(ink (1797, 1, 8, 8) in [0, 1], labels, train indices, test indices)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(1797).permutation(len(digits.target))
    ink = torch.as_tensor(digits.images / 16.0, dtype=torch.float32)[:, None]
    return ink, torch.as_tensor(digits.target, dtype=torch.int64), np.sort(order[:TRAIN_SCANS]), np.sort(order[TRAIN_SCANS:])


def render(indices: torch.Tensor, gen: torch.Generator, size: int = 32) -> torch.Tensor:
    """The scans at `indices`, each at a random scale (the digit 60–85 % of the canvas) and shift, in
    random colours; uint8 (N, 3, size, size)."""
    ink, _, _, _ = _scans()
    n = len(indices)
    scale = 0.60 + 0.25 * torch.rand(n, generator=gen)
    shift = (torch.rand(n, 2, generator=gen) - 0.5) * 2 * (1 - scale[:, None]) * 0.8
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = -shift / scale[:, None]
    grid = F.affine_grid(theta, (n, 1, size, size), align_corners=False)
    alpha = F.grid_sample(ink[indices], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    fg, bg = colour_pairs(n, gen)
    image = alpha * fg[:, :, None, None] + (1 - alpha) * bg[:, :, None, None]
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


@dataclass(frozen=True)
class DigitStream(ShapeStream):
    """Training batches: scans of the training split, drawn anew (colours, scale, shift) every time;
    the shapes' stream otherwise (sizes, steps, a pure function of (seed, epoch, step))."""

    def batch(self, epoch: int, step: int) -> torch.Tensor:
        gen = _seeded(self.seed, epoch, step, 11)
        train = torch.as_tensor(_scans()[2])
        return render(train[torch.randint(len(train), (self.batch_size,), generator=gen)], gen, self.size)


def labelled_set(split: str, n: int | None, seed: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Scans of a split ("train", or "test" and "probe": the held-out scans), class-balanced when `n`
    caps them, sorted by class, each drawn once in colours fixed by `seed`."""
    _, labels, train, test = _scans()
    pool = train if split == "train" else test
    if n is not None and n < len(pool):
        rng = np.random.default_rng(seed)
        per_class = max(1, n // len(CLASSES))
        pool = np.concatenate([rng.permutation(pool[labels[pool].numpy() == c])[:per_class] for c in range(10)])
    pool = pool[np.argsort(labels[pool].numpy(), kind="stable")]
    index = torch.as_tensor(pool)
    return render(index, _seeded(seed, 4242, len(pool)), size), labels[index]
