"""Mutual information between units, from percentile bins (the seed's Section 3.3).

Each unit's activations are binned by percentiles: values at or below 1e-6
(a ReLU's zeros, often most of the mass) get a bin of their own, and the
positive values are cut into bins of equal mass (5 % each by default). The
contingency tables of *all* unit pairs come from one matrix product of one-hot
codes — (n, A·bins)ᵀ (n, B·bins) — instead of a loop over pairs; MI is then the
plug-in estimate in nats, the same number scikit-learn's `mutual_info_score`
gives for one pair. The seed's code puts the positive values' percentile edges
on the whole distribution; ours on the positive part, so every positive bin
holds the same share of the unit's positive values.
"""

from __future__ import annotations

import math

import torch
from sklearn.base import BaseEstimator

from ...errors import UserError


def percentile_codes(x, bin_mass: float = 0.05, zero: float = 1e-6, block: int = 256) -> tuple[torch.Tensor, int]:
    """(n, units) activations -> (n, units) bin codes (uint8 while the bins fit) and the number of bins.

    Code 0 holds values <= `zero`; codes 1..k cut each unit's larger values into
    k = round(1 / bin_mass) bins of equal mass (percentile edges). Computed `block` units at a
    time, so the quantiles' float64 temporaries are (n, block), not (n, units).
    """
    x = torch.as_tensor(x)
    k = int(round(1.0 / bin_mass))
    if k < 1 or x.ndim != 2:
        raise ValueError(f"need bin_mass in (0, 1] and (n, units) activations; got {bin_mass}, shape {tuple(x.shape)}")
    codes = torch.empty(x.shape, dtype=torch.uint8 if k < 255 else torch.int64, device=x.device)
    q = torch.linspace(0, 1, k + 1, dtype=torch.float64, device=x.device)[1:-1]
    for start in range(0, x.shape[1], block):
        part = x[:, start:start + block].double()
        positive = part > zero
        edges = torch.nanquantile(torch.where(positive, part, torch.nan), q, dim=0)  # (k-1, block)
        edges = torch.nan_to_num(edges, nan=torch.inf).T.contiguous()  # units without positive values
        found = 1 + torch.searchsorted(edges, part.T.contiguous(), right=True).T
        codes[:, start:start + block] = torch.where(positive, found, 0)
    return codes, k + 1


def _onehot(codes: torch.Tensor, n_bins: int, dtype) -> torch.Tensor:
    return torch.nn.functional.one_hot(codes.long(), n_bins).to(dtype).reshape(codes.shape[0], -1)


def joint_counts(codes_a: torch.Tensor, codes_b: torch.Tensor, n_bins: int, chunk: int = 64) -> torch.Tensor:
    """Contingency tables of every (A unit, B unit) pair: (A, B, bins, bins), via one-hot products."""
    n = codes_a.shape[0]
    dtype = torch.float32 if n < 2**24 else torch.float64  # counts stay exact
    onehot_a = _onehot(codes_a, n_bins, dtype)
    out = []
    for start in range(0, codes_b.shape[1], chunk):
        joint = (onehot_a.T @ _onehot(codes_b[:, start : start + chunk], n_bins, dtype))
        out.append(joint.reshape(codes_a.shape[1], n_bins, -1, n_bins).permute(0, 2, 1, 3))
    return torch.cat(out, dim=1).double()


BYTES_PER_CELL = 64  # a block's tables (float32, then float64) and the MI's temporaries, per (a, b, bin, bin)


def _block_costs(samples: int, n_bins: int) -> tuple[int, int]:
    """Bytes of a k × k block = c2·k² + c1·k: k² tables of bins² cells, and two one-hot blocks of
    (samples, k·bins) float32. Returns (c2, c1)."""
    return n_bins * n_bins * BYTES_PER_CELL, 2 * samples * n_bins * 4


def block_units(samples: int, n_bins: int, memory_gb: float) -> int:
    """The side k of the square blocks (k units of A against k of B) that fit in `memory_gb`; 0 when none fits."""
    c2, c1 = _block_costs(samples, n_bins)
    budget = memory_gb * 2**30
    return int((-c1 + math.sqrt(c1 * c1 + 4 * c2 * budget)) // (2 * c2))


def mutual_info_blocks(codes_a: torch.Tensor, codes_b: torch.Tensor, n_bins: int, memory_gb: float = 2.0) -> torch.Tensor:
    """(A, B) mutual information of every unit pair, made and reduced a square block of units at a
    time (`block_units`), so the step's memory stays within `memory_gb` at any width (1024 × 1024
    units take 20 GB at once). Each pair's value is the same as from all tables at once: the MI
    reduces over a pair's own bins only."""
    k = block_units(codes_a.shape[0], n_bins, memory_gb)
    if k < 1:
        need = block_units_need(codes_a.shape[0], n_bins)
        raise UserError(f"Mutual information over {codes_a.shape[0]} samples needs at least {need:.2f} GiB for one "
                        f"pair of units, above memory_gb={memory_gb}; lower mi_samples or raise memory_gb.")
    out = torch.empty(codes_a.shape[1], codes_b.shape[1], dtype=torch.float64)
    for a in range(0, codes_a.shape[1], k):
        for b in range(0, codes_b.shape[1], k):
            counts = joint_counts(codes_a[:, a:a + k], codes_b[:, b:b + k], n_bins, chunk=k)
            out[a:a + k, b:b + k] = mutual_info_from_counts(counts)
    return out


def block_units_need(samples: int, n_bins: int) -> float:
    """GiB for the smallest block, one unit of each net."""
    return sum(_block_costs(samples, n_bins)) / 2**30


def mutual_info_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """Plug-in mutual information (nats) of contingency tables (..., bins, bins)."""
    p = counts / counts.sum(dim=(-2, -1), keepdim=True)
    pa, pb = p.sum(-1, keepdim=True), p.sum(-2, keepdim=True)
    ratio = torch.where(p > 0, p / (pa * pb), 1.0)
    return (p * ratio.log()).sum(dim=(-2, -1)).clamp_min(0)


def entropy_from_codes(codes: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Each unit's binned entropy (nats), from counts (not an (n, units, bins) one-hot)."""
    units = codes.shape[1]
    flat = codes.long() + n_bins * torch.arange(units, device=codes.device)
    counts = torch.bincount(flat.flatten(), minlength=units * n_bins).reshape(units, n_bins).double()
    p = counts / counts.sum(-1, keepdim=True)
    return -(torch.where(p > 0, p * p.log(), 0.0)).sum(-1)


class MutualInformation(BaseEstimator):
    """MI (nats) between every unit of A and every unit of B, from sampled activations.

    `fit(xa, xb)` takes the same samples (rows: images or image positions) of both nets.

    Attributes: mi_ (A units, B units), entropy_a_, entropy_b_ (each unit's binned
    entropy, the bound on its MI), n_bins_, n_samples_.
    """

    def __init__(self, bin_mass: float = 0.05, zero: float = 1e-6, memory_gb: float = 2.0):
        self.bin_mass = bin_mass
        self.zero = zero
        self.memory_gb = memory_gb

    def fit(self, xa, xb) -> "MutualInformation":
        xa, xb = torch.as_tensor(xa), torch.as_tensor(xb)
        if xa.ndim != 2 or xb.ndim != 2 or xa.shape[0] != xb.shape[0]:
            raise ValueError(f"need (n, units) activations of both nets on the same samples; "
                             f"got {tuple(xa.shape)} and {tuple(xb.shape)}")
        codes_a, n_bins = percentile_codes(xa, self.bin_mass, self.zero)
        codes_b, _ = percentile_codes(xb, self.bin_mass, self.zero)
        self.mi_ = mutual_info_blocks(codes_a, codes_b, n_bins, self.memory_gb).cpu().numpy()
        self.entropy_a_ = entropy_from_codes(codes_a, n_bins).cpu().numpy()
        self.entropy_b_ = entropy_from_codes(codes_b, n_bins).cpu().numpy()
        self.n_bins_ = n_bins
        self.n_samples_ = int(xa.shape[0])
        self.codes_a_, self.codes_b_ = codes_a.cpu().numpy(), codes_b.cpu().numpy()
        return self


class RowSampler:
    """A fixed-size, seeded sample of rows from a stream of batches (for MI, which needs samples).

    Each batch contributes rows in proportion to its size, so the sample is
    spread over the whole stream; `expected` is the stream's total row count.
    """

    def __init__(self, size: int, expected: int, seed: int = 0):
        self.size, self.expected = int(size), int(expected)
        self.generator = torch.Generator().manual_seed(seed)
        self.seen = 0
        self.parts: list[list[torch.Tensor]] = []

    def add(self, *blocks) -> None:
        n = blocks[0].shape[0]
        target = min(self.size, round(self.size * (self.seen + n) / max(self.expected, 1)))
        have = sum(len(p[0]) for p in self.parts)
        take = max(0, min(n, target - have))
        self.seen += n
        if take:
            idx = torch.randperm(n, generator=self.generator)[:take].sort().values
            self.parts.append([b[idx.to(b.device)].cpu() for b in blocks])

    def rows(self) -> list[torch.Tensor]:
        return [torch.cat([p[k] for p in self.parts]) for k in range(len(self.parts[0]))] if self.parts else []
