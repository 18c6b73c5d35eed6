"""The built-in data set: one large filled shape per image, colour as nuisance.

Class = form (circle, triangle, square, star); foreground and background colours
are uniform random RGB, kept apart, and carry no label information. A network
that matches SimCLR views by colour learns little about form — the shortcut
that colour jitter removes. That is what lets the demo reproduce the seed's
finding without downloading anything.

Images are rendered 3x oversampled and shrunk with a box filter (anti-aliased
edges), vectorized over the batch in torch so a fresh stream costs little next
to training. Every batch is a pure function of (seed, epoch, step), which makes
training resumable bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

CLASSES = ("circle", "triangle", "square", "star")
# Polygon outlines as (vertex count, inner/outer radius ratio); star-shaped about
# their centre, so the boundary is a function of the angle alone.
_OUTLINES = {"triangle": (3, 1.0), "square": (4, 1.0), "star": (10, 0.45)}
_MIN_COLOUR_DISTANCE = 0.35  # RGB distance in [0, 1] units between fg and bg


def _seeded(*parts: int) -> torch.Generator:
    """A generator whose stream depends only on the integers given."""
    seed = 0
    for p in parts:
        seed = (seed * 1_000_003 + int(p) + 1) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


def _boundary_radius(theta: torch.Tensor, rotation: torch.Tensor, n: int, inner: float) -> torch.Tensor:
    """Distance from the centre to the outline along angle `theta` (unit circumradius).

    The outline has `n` vertices at alternating radii 1 and `inner` (a star when
    inner < 1); along a ray, the boundary is the line through the two vertices
    of the sector the ray falls in.
    """
    step = 2 * math.pi / n
    rel = torch.remainder(theta - rotation, 2 * math.pi)
    k = torch.floor(rel / step)
    a1, a2 = k * step, (k + 1) * step
    even = torch.remainder(k, 2) == 0
    r1 = torch.where(even, torch.ones_like(k), torch.full_like(k, inner))
    r2 = torch.where(even, torch.full_like(k, inner), torch.ones_like(k))
    p1x, p1y = r1 * torch.cos(a1), r1 * torch.sin(a1)
    p2x, p2y = r2 * torch.cos(a2), r2 * torch.sin(a2)
    ex, ey = p2x - p1x, p2y - p1y
    ux, uy = torch.cos(rel), torch.sin(rel)
    # ray t*u meets the edge line where cross(e, t*u - p1) = 0
    return (ex * p1y - ey * p1x) / (ex * uy - ey * ux)


def colour_pairs(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(foreground, background) RGB colours in [0, 1], uniform, each pair at least
    `_MIN_COLOUR_DISTANCE` apart (background drawn first, too-close foregrounds redrawn)."""
    bg = torch.rand(n, 3, generator=gen)
    fg = torch.rand(n, 3, generator=gen)
    for _ in range(100):
        close = (fg - bg).norm(dim=1) < _MIN_COLOUR_DISTANCE
        if not close.any():
            break
        fg[close] = torch.rand(int(close.sum()), 3, generator=gen)
    return fg, bg


def render(labels: torch.Tensor, gen: torch.Generator, size: int = 32, supersample: int = 3) -> torch.Tensor:
    """Render one random shape per label; returns uint8 images (N, 3, size, size)."""
    n = labels.shape[0]
    radius = 0.30 + 0.15 * torch.rand(n, generator=gen)
    centre = (torch.rand(n, 2, generator=gen) - 0.5) * 0.24
    rotation = torch.rand(n, generator=gen) * 2 * math.pi
    fg, bg = colour_pairs(n, gen)
    return draw(labels, radius, centre, rotation, fg, bg, size, supersample)


def draw(labels, radius, centre, rotation, fg, bg, size: int = 32, supersample: int = 3) -> torch.Tensor:
    """Draw given shapes: radius (N,) and centre (N, 2) in canvas units, colours (N, 3) in [0, 1]."""
    n = labels.shape[0]
    big = size * supersample
    coords = (torch.arange(big, dtype=torch.float32) + 0.5) / big - 0.5
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    dx = xx[None] - centre[:, 0, None, None]
    dy = yy[None] - centre[:, 1, None, None]
    rho = torch.sqrt(dx**2 + dy**2) / radius[:, None, None]
    theta = torch.atan2(dy, dx)
    inside = torch.zeros(n, big, big, dtype=torch.bool)
    for index, name in enumerate(CLASSES):
        rows = labels == index
        if not rows.any():
            continue
        if name == "circle":
            inside[rows] = rho[rows] <= 1.0
        else:
            sides, inner = _OUTLINES[name]
            bound = _boundary_radius(theta[rows], rotation[rows, None, None], sides, inner)
            inside[rows] = rho[rows] <= bound
    mask = inside.float()[:, None]
    image = mask * fg[:, :, None, None] + (1 - mask) * bg[:, :, None, None]
    image = F.avg_pool2d(image, supersample)
    return (image * 255).round().to(torch.uint8)


@dataclass(frozen=True)
class ShapeStream:
    """An endless procedural stream: new images for every (epoch, step)."""

    size: int = 32
    seed: int = 0
    epoch_size: int = 4096
    batch_size: int = 128

    @property
    def steps_per_epoch(self) -> int:
        return max(1, self.epoch_size // self.batch_size)

    def batch(self, epoch: int, step: int) -> torch.Tensor:
        gen = _seeded(self.seed, epoch, step, 7)
        labels = torch.randint(len(CLASSES), (self.batch_size,), generator=gen)
        return render(labels, gen, self.size)

    def epoch(self, epoch: int):
        for step in range(self.steps_per_epoch):
            yield self.batch(epoch, step)


def labelled_set(n: int, seed: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, balanced labelled set (uint8 images, int64 labels), sorted by class."""
    labels = torch.arange(n) % len(CLASSES)
    labels = labels.sort(stable=True).values
    gen = _seeded(seed, 12345, n)
    return render(labels, gen, size), labels
