"""Can a prototype be trusted? Scores that compare a unit's prototype with what the unit does on
natural images (issue #28; its five scores, for a model in memory).

A prototype drives its unit, but an image can drive a unit by a path natural images never take
(Geirhos et al. 2023), be made of frequencies no photograph has, or hold only at its exact pixels.
Each score below is computed for all units of a layer at once, from the unit's value at the centre
position (the engine's objective) and a set of natural probe images (the study's stimulus set):

- `path_similarity`: for each earlier layer l, Spearman(ρ) between the prototype's per-channel mean
  activation at l and the mean profile of the unit's top-k probe images, minus the same for k
  random probe images. Chance is 0: near it, the prototype reaches the unit by another path.
- `spectral_naturalness`: the distance of the prototype's radially averaged log-amplitude spectrum
  from the probe images' mean spectrum, over the median distance of a probe image. 1 is as
  natural as a typical probe image; larger is less natural.
- `robustness`: the unit's value under small random shifts, scales and turns of the prototype (the
  engine's `robust_forward`), over its value on the prototype as it is. 1: nothing lost.
- `plausibility` (after MACO): in an embedding that is not the studied net (another network's
  pooled features), the mean cosine distance from the prototype to k random probe images minus
  that to the unit's top-k probe images. Chance is 0; above it the prototype looks like what
  excites the unit.
- `transfer`: a second net's partner unit (the alignment's match) on the prototype, over that
  partner's 99th percentile on the probe images. Above 1 the prototype drives the partner as
  hard as the top 1 % of natural images do.
"""

from __future__ import annotations

import contextlib

import torch

from ..data.datasets import normalize
from ..nets.layers import truncate
from .activations import layer_activations
from ..synth.objectives import centre_index


_SHARED: list[dict] = []


@contextlib.contextmanager
def shared_passes():
    """Within it, each (model, layers) is truncated once. Why: tracing costs more than the forward
    passes of a small net, and scoring one layer truncates the same nets a dozen times."""
    _SHARED.append({})
    try:
        yield
    finally:
        _SHARED.pop()


def _truncated(model, layers):
    if not _SHARED:
        return truncate(model, layers)
    key = (id(model), tuple([layers] if isinstance(layers, str) else layers))
    if key not in _SHARED[-1]:
        _SHARED[-1][key] = truncate(model, layers)
    return _SHARED[-1][key]


def layer_profiles(model, layers: list[str], images: torch.Tensor) -> dict[str, torch.Tensor]:
    """{layer: (N, units)} each unit's mean over positions (the activations stage's `mean` features),
    through the shared truncated net, for float images in [0, 1] or uint8, on the CPU."""
    means = layer_activations(_truncated(model, layers), layers, images, device=images.device, batch_size=64)
    return {layer: a.cpu() for layer, a in means.items()}


def centre_values(model, layer: str, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """(N, units): every unit's value at the layer's centre position, as the engine scores it."""
    net = _truncated(model, layer)
    values = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            a = net(normalize(images[start:start + batch]))[layer].float()
            cy, cx = centre_index(a.shape[2], a.shape[3])
            values.append(a[:, :, cy, cx])
    return torch.cat(values)


def spearman_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman correlation of each row of `a` with the same row of `b` (ties ranked by order)."""
    ranks = [x.argsort(dim=1).argsort(dim=1).double() for x in (a, b)]
    ra, rb = (r - r.mean(dim=1, keepdim=True) for r in ranks)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1)).clamp_min(1e-12)


def path_similarity(model, layer: str, units: list[int], prototypes: torch.Tensor, probe: torch.Tensor,
                    earlier: list[str], k: int = 8, seed: int = 0, chosen=None) -> dict[str, torch.Tensor]:
    """{earlier layer: (U,)} path similarity of each unit's prototype (row u of `prototypes`, float
    (U, 3, S, S) in [0, 1]) against its top-`k` probe images (`probe`, (P, 3, S, S)); `chosen`:
    those images and the random ones, when `exemplars` has picked them already."""
    top, random = chosen or exemplars(centre_values(model, layer, probe)[:, units], k, seed)
    natural = layer_profiles(model, earlier, probe)
    made = layer_profiles(model, earlier, prototypes)
    return {l: spearman_rows(made[l], natural[l][top].mean(1)) - spearman_rows(made[l], natural[l][random].mean(1))
            for l in earlier}


def exemplars(responses: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(U, k) indices of each unit's top-k probe images, from their (P, U) `responses`, and (U, k)
    seeded random ones: what path similarity and plausibility compare a prototype with."""
    draws = torch.Generator().manual_seed(seed)
    random = torch.stack([torch.randperm(len(responses), generator=draws)[:k] for _ in range(responses.shape[1])])
    return responses.topk(k, dim=0).indices.T.cpu(), random


def plausibility(model, layer: str, units: list[int], prototypes: torch.Tensor, probe: torch.Tensor,
                 embed, embed_layer: str, k: int = 8, seed: int = 0, chosen=None) -> torch.Tensor:
    """(U,): how much nearer each prototype lies to its unit's top-k probe images than to k random
    ones, in `embed`'s `embed_layer` (per-unit means over positions; cosine distance); `chosen` as
    for `path_similarity`."""
    top, random = chosen or exemplars(centre_values(model, layer, probe)[:, units], k, seed)
    natural = torch.nn.functional.normalize(layer_profiles(embed, [embed_layer], probe)[embed_layer], dim=1)
    made = torch.nn.functional.normalize(layer_profiles(embed, [embed_layer], prototypes)[embed_layer], dim=1)

    def distance(chosen: torch.Tensor) -> torch.Tensor:  # (U,) mean cosine distance to the chosen images
        return 1 - (natural[chosen] * made[:, None]).sum(-1).mean(1)

    return distance(random) - distance(top)


def transfer(other, layer: str, partners: list[int], prototypes: torch.Tensor, probe: torch.Tensor,
             quantile: float = 0.99) -> torch.Tensor:
    """(U,): partner unit `partners[u]` of net `other` (-1: none, NaN) on prototype u, over the
    partner's `quantile` on the probe images, both at the centre position."""
    known = torch.tensor([p >= 0 for p in partners])
    index = torch.tensor([max(p, 0) for p in partners])
    natural = centre_values(other, layer, probe).cpu()[:, index]  # (P, U)
    made = centre_values(other, layer, prototypes).cpu()[torch.arange(len(partners)), index]
    bar = natural.quantile(quantile, dim=0).clamp_min(1e-12)
    return torch.where(known, made / bar, torch.nan)


def radial_log_spectrum(images: torch.Tensor) -> torch.Tensor:
    """(N, R): the grey image's log-amplitude spectrum averaged over rings of equal frequency."""
    grey = images.float().mean(1)
    grey = grey - grey.mean(dim=(1, 2), keepdim=True)
    amplitude = torch.fft.fftshift(torch.fft.fft2(grey).abs(), dim=(1, 2))
    h, w = grey.shape[1:]
    yy, xx = torch.meshgrid(torch.arange(h) - h // 2, torch.arange(w) - w // 2, indexing="ij")
    ring = (yy.pow(2) + xx.pow(2)).sqrt().round().long().flatten()
    rings = int(min(h, w) // 2)  # whole rings only: the corners are not a full circle
    keep = (ring >= 1) & (ring <= rings)
    logs = torch.log(amplitude.flatten(1)[:, keep] + 1e-6)
    sums = torch.zeros(len(images), rings + 1).index_add_(1, ring[keep], logs)
    counts = torch.zeros(rings + 1).index_add_(0, ring[keep], torch.ones(int(keep.sum())))
    return (sums / counts.clamp_min(1))[:, 1:]


def spectral_naturalness(prototypes: torch.Tensor, probe: torch.Tensor) -> torch.Tensor:
    """(U,): each prototype's spectral distance from the probe images' mean, over a probe image's median."""
    natural = radial_log_spectrum(probe)
    mean = natural.mean(0)
    typical = (natural - mean).pow(2).mean(1).sqrt().median()
    return (radial_log_spectrum(prototypes) - mean).pow(2).mean(1).sqrt() / typical.clamp_min(1e-12)


def robustness(model, layer: str, units: list[int], prototypes: torch.Tensor, draws: int = 8,
               seed: int = 0) -> torch.Tensor:
    """(U,): the mean of each unit's centre value over `draws` random small transforms of its
    prototype, over its value on the prototype itself (NaN where that is not positive)."""
    from ..synth.robust import robust_forward

    net = _truncated(model, layer)

    def centre(x: torch.Tensor) -> torch.Tensor:
        a = net(normalize(x))[layer].float()
        cy, cx = centre_index(a.shape[2], a.shape[3])
        return a[torch.arange(len(units), device=a.device), torch.as_tensor(units, device=a.device), cy, cx]

    moved = robust_forward(centre, seed=seed)
    with torch.no_grad():
        plain = centre(prototypes)
        mean = torch.stack([moved(prototypes) for _ in range(draws)]).mean(0)
    return torch.where(plain > 0, mean / plain.clamp_min(1e-12), torch.nan)
