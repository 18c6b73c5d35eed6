"""Two networks at one layer: one pass of the same images through both, then every estimator.

`protoscope.align` (two models in memory) and the `align` stage (a study's pairs at an epoch)
both run `accumulate` — one stream of the images, keeping per-position moments of each pair,
the pooled moments of every (model, layer) for CKA, and a fixed-size row sample for mutual
information — and `fit_pair`, which fits the seed's estimators on what it kept.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ...errors import UserError
from ..activations import stream_activations
from .cka import CKA
from .clustering import MappingClustering, SpectralAlignment
from .correlation import Correlation
from .matching import Matching
from .mutual_info import MutualInformation, RowSampler, block_units_need
from .sparse import SparsePrediction
from .stats import Moments, accumulation_device, as_rows, pool


@dataclass
class PairAlignment:
    """The fitted estimators of one pair at one layer, unit indices those of each net's layer.

    `correlation` always; the rest are None where they cannot be fitted (a net with no live unit
    at this layer; no row sample: no mutual information). `cka` and `cka_debiased` are fitted on
    the pooled moments (one sample per image), blocks [a, b], when those are given.
    """

    correlation: Correlation
    bipartite: Matching | None = None
    semi: Matching | None = None
    mutual_info: MutualInformation | None = None
    mi_bipartite: Matching | None = None
    mi_semi: Matching | None = None
    sparse: SparsePrediction | None = None
    clustering: MappingClustering | None = None
    spectral: SpectralAlignment | None = None
    cka: CKA | None = None
    cka_debiased: CKA | None = None


def penalty_sweep(spec) -> list[float]:
    """The sparse sweep's penalties: `spec.penalties`, plus the clustered one when it is not among them."""
    values = list(dict.fromkeys(float(p) for p in spec.penalties))
    close = lambda p, q: p == q or (p > 0 and q > 0 and abs(np.log10(p) - np.log10(q)) < 0.01)  # 0.00251 ~ 10^-2.6
    if not any(close(p, spec.cluster_penalty) for p in values):
        values.append(float(spec.cluster_penalty))
    return values


def fixed_memory_gb(units_a: int, units_b: int, samples: int) -> float:
    """GiB a pair's fit keeps whatever the blocks: its moments and the spectral step's (A+B)² float64
    matrices (5), the row sample (float32) and its bin codes (uint8), and the (A, B) float64 matrices
    the estimators hold (correlations, MI, sparse weights and their gradient steps: 8). An estimate
    from the arrays' sizes; bench/align_memory.py measures the mutual-information step."""
    both = units_a + units_b
    return (8 * both * both * 5 + samples * both * 5 + 8 * units_a * units_b * 8) / 2**30


def check_memory(units_a: int, units_b: int, spec, where: str) -> float:
    """The budget left for mutual information's blocks; a pair that cannot fit `spec.memory_gb` is refused."""
    fixed = fixed_memory_gb(units_a, units_b, spec.mi_samples)
    need = fixed + (block_units_need(spec.mi_samples, round(1 / spec.bin_mass) + 1) if spec.mi_samples else 0)
    if need > spec.memory_gb:
        raise UserError(f"align {where}: {units_a} x {units_b} units with mi_samples={spec.mi_samples} need at least "
                        f"{need:.2f} GiB, above align.memory_gb={spec.memory_gb}; raise memory_gb or lower mi_samples.")
    return spec.memory_gb - fixed


def fit_pair(moments: Moments, sample, spec, pooled: Moments | None = None) -> PairAlignment:
    """Every estimator of the seed (Li et al. 2016) on one pair's moments; `spec` is an `AlignSpec`."""
    fit = PairAlignment(Correlation().fit(moments))
    if pooled is not None:
        fit.cka, fit.cka_debiased = CKA(False).fit(pooled), CKA(True).fit(pooled)
    corr = fit.correlation
    ua, ub = corr.alive_a_, corr.alive_b_
    if not len(ua) or not len(ub):  # a net with no live unit here: nothing to align
        return fit
    fit.bipartite = Matching("bipartite", spec.threshold).fit(corr.between_, ua, ub)
    fit.semi = Matching("semi", spec.threshold).fit(corr.between_, ua, ub)
    if sample is not None and len(sample) and spec.mi_samples:
        xa, xb = sample
        budget = check_memory(xa.shape[1], xb.shape[1], spec, "pair")
        fit.mutual_info = MutualInformation(spec.bin_mass, memory_gb=budget).fit(xa[:, ua], xb[:, ub])
        fit.mi_bipartite = Matching("bipartite", spec.threshold).fit(fit.mutual_info.mi_, ua, ub)
        fit.mi_semi = Matching("semi", spec.threshold).fit(fit.mutual_info.mi_, ua, ub)
    fit.sparse = SparsePrediction(penalty_sweep(spec), spec.sparse_iter).fit(corr.within_a_, corr.between_)
    fit.clustering = MappingClustering().fit(fit.sparse.weights(spec.cluster_penalty).T)  # mapping (A, B)
    fit.spectral = SpectralAlignment(spec.clusters, spec.tau, spec.alpha).fit(corr.within_a_, corr.between_,
                                                                             corr.within_b_)
    return fit


def stream(models, layers, images, device, batch_size: int):
    """Per batch, one {layer: (B, C, H, W)} per model, all from the same images."""
    streams = [stream_activations(m, layers, images, device=device, batch_size=batch_size, pool=False)
               for m in models]
    yield from zip(*streams)


@dataclass
class Streamed:
    """What `accumulate` kept: per-position moments and row samples per (pair, layer), pooled
    moments of every (model, layer) block, model-major."""

    pairs: dict
    samples: dict
    pooled: Moments


def accumulate(models: list, layers: list[str], pairs: list[tuple[int, int]], images, *, device, batch_size: int,
               mi_samples: int, seed: int, names: list[str] | None = None) -> Streamed:
    """One pass of `images` through every model; `pairs` index `models`; keys are ((i, j), layer)."""
    acc = accumulation_device(device)
    moments = {(p, layer): Moments(acc, higher=False) for p in pairs for layer in layers}
    pooled = Moments(acc, names=names)
    samplers: dict = {}
    for outs in stream(models, layers, images, device, batch_size):
        pooled.partial_fit(*[pool(out[layer]) for out in outs for layer in layers])
        for (a, b), layer in itertools.product(pairs, layers):
            xa, xb = outs[a][layer], outs[b][layer]
            moments[(a, b), layer].partial_fit(xa, xb)
            if mi_samples:
                if ((a, b), layer) not in samplers:
                    per_image = int(np.prod(xa.shape[2:])) if xa.ndim > 2 else 1
                    samplers[(a, b), layer] = RowSampler(mi_samples, per_image * len(images), seed=seed)
                samplers[(a, b), layer].add(as_rows(xa), as_rows(xb))
    return Streamed(moments, {key: sampler.rows() for key, sampler in samplers.items()}, pooled)
