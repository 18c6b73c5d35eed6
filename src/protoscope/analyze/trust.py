"""Can a prototype be trusted? Scores that compare a unit's prototype with what the unit does on
natural images (issue #28; its five scores, for a model in memory).

A prototype drives its unit, but an image can drive a unit by a path natural images never take
(Geirhos et al. 2023), be made of frequencies no photograph has, or hold only at its exact pixels.
Each score below is computed for all units of a layer at once, from the unit's value at the studied
cell (the engine's objective: the cell whose receptive field is centred) and a set of natural probe
images (the study's stimulus set):

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
from dataclasses import dataclass

import numpy as np
import torch

from ..data.datasets import normalize
from ..nets.layers import truncate
from ..synth.position import unit_position

_SHARED: list[dict] = []


@contextlib.contextmanager
def shared_passes(keep: dict | None = None):
    """Within it, each (model, layers) is truncated once and each layer's studied cell found once.
    Why: tracing costs more than the forward passes of a small net, and scoring one layer truncates
    the same nets a dozen times. `keep`: a dict that outlives the block (a stage's jobs share one:
    a traced graph shares its model's parameters, so it follows the weights each job loads)."""
    _SHARED.append({} if keep is None else keep)
    try:
        yield
    finally:
        _SHARED.pop()


def _memo(key, model, make):
    """`make()` once per key inside `shared_passes`; the entry holds `model` too, so its id (in the
    key) is never reused by another object while the entry lives."""
    if not _SHARED:
        return make()
    if key not in _SHARED[-1]:
        _SHARED[-1][key] = (model, make())
    return _SHARED[-1][key][1]


def _truncated(model, layers):
    names = tuple([layers] if isinstance(layers, str) else layers)
    return _memo(("net", id(model), names), model, lambda: truncate(model, list(names)))


def studied_cell(model, layer: str, size) -> tuple[int, int]:
    """The map cell the engine studies `layer`'s units at (`synth.position.unit_position`)."""
    def find():
        found = unit_position(model, layer, tuple(int(v) for v in size))
        return found.y, found.x

    return _memo(("cell", id(model), layer, tuple(int(v) for v in size)), model, find)


# --------------------------------------------------------------------------
# One pass of a set of images through a net
# --------------------------------------------------------------------------


@dataclass
class Responses:
    """A set of images passed once through a net: per layer, (N, units) means over positions and
    (N, units) values at the studied cell (what the engine maximizes)."""

    means: dict[str, torch.Tensor]
    cells: dict[str, torch.Tensor]


@torch.no_grad()
def responses(model, layers: list[str], images: torch.Tensor, batch: int = 64) -> Responses:
    """`images` (uint8, or float in [0, 1]) through `model` truncated at the deepest of `layers`, once."""
    layers = list(dict.fromkeys(layers))
    net = _truncated(model, layers)
    where = {layer: studied_cell(model, layer, images.shape[-2:]) for layer in layers}
    means: dict[str, list] = {layer: [] for layer in layers}
    cells: dict[str, list] = {layer: [] for layer in layers}
    for start in range(0, len(images), batch):
        out = net(normalize(images[start:start + batch]))
        for layer in layers:
            a = out[layer].float()
            y, x = where[layer]
            means[layer].append(a.mean(dim=(2, 3)).cpu())
            cells[layer].append(a[:, :, y, x].cpu())
    return Responses({k: torch.cat(v) for k, v in means.items()}, {k: torch.cat(v) for k, v in cells.items()})


def pooled(model, layer: str, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """(N, features): `layer`'s output averaged over positions (a vector layer as it is): an embedding."""
    net = _truncated(model, layer)
    parts = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            a = net(normalize(images[start:start + batch]))[layer].float()
            parts.append((a.mean(dim=tuple(range(2, a.ndim))) if a.ndim > 2 else a).cpu())
    return torch.cat(parts)


def layer_profiles(model, layers: list[str], images: torch.Tensor) -> dict[str, torch.Tensor]:
    """{layer: (N, units)} each unit's mean over positions."""
    return responses(model, layers, images).means


def centre_values(model, layer: str, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """(N, units): every unit's value at the studied cell (`studied_cell`), as the engine scores it."""
    return responses(model, [layer], images, batch).cells[layer]


# --------------------------------------------------------------------------
# The scores, from responses
# --------------------------------------------------------------------------


def spearman_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman correlation of each row of `a` with the same row of `b` (ties ranked by order)."""
    ranks = [x.argsort(dim=1).argsort(dim=1).double() for x in (a, b)]
    ra, rb = (r - r.mean(dim=1, keepdim=True) for r in ranks)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1)).clamp_min(1e-12)


def exemplars(responses: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(U, k) indices of each unit's top-k probe images, from their (P, U) `responses`, and (U, k)
    seeded random ones: what path similarity and plausibility compare a prototype with."""
    draws = torch.Generator().manual_seed(seed)
    random = torch.stack([torch.randperm(len(responses), generator=draws)[:k] for _ in range(responses.shape[1])])
    return responses.topk(k, dim=0).indices.T.cpu(), random


def path_from(made: torch.Tensor, natural: torch.Tensor, top: torch.Tensor, random: torch.Tensor) -> torch.Tensor:
    """(U,): Spearman of each prototype's profile (row of `made`, (U, C)) with its top images' mean
    profile, minus with its random images' (`natural`: (P, C))."""
    return spearman_rows(made, natural[top].mean(1)) - spearman_rows(made, natural[random].mean(1))


def plausibility_from(made: torch.Tensor, natural: torch.Tensor, top: torch.Tensor,
                      random: torch.Tensor) -> torch.Tensor:
    """(U,): mean cosine distance to the random images minus to the top images, in an embedding."""
    made, natural = (torch.nn.functional.normalize(x, dim=1) for x in (made, natural))

    def distance(chosen: torch.Tensor) -> torch.Tensor:
        return 1 - (natural[chosen] * made[:, None]).sum(-1).mean(1)

    return distance(random) - distance(top)


def transfer_from(made: torch.Tensor, natural: torch.Tensor, partners: list[int],
                  quantile: float = 0.99) -> torch.Tensor:
    """(U,): partner `partners[u]` (-1: none, NaN) on prototype u (`made`: (U, C_b) cell values of
    the partner net) over its `quantile` on the probe images (`natural`: (P, C_b))."""
    known = torch.tensor([p >= 0 for p in partners])
    index = torch.tensor([max(p, 0) for p in partners])
    bar = natural[:, index].quantile(quantile, dim=0).clamp_min(1e-12)
    return torch.where(known, made[torch.arange(len(partners)), index] / bar, torch.nan)


def natural_ratio(own: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """own / best where a stimulus image excites the unit; inf where only the prototype does; NaN
    where neither does (a silent unit: nothing to compare)."""
    ratio = own / best.clamp_min(1e-12)
    return torch.where(best > 0, ratio, torch.where(own > 0, torch.inf, torch.nan))


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


def spectral_reference(probe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the probe images' mean radial log spectrum, a probe image's median distance from it)."""
    natural = radial_log_spectrum(probe.cpu())
    mean = natural.mean(0)
    return mean, (natural - mean).pow(2).mean(1).sqrt().median()


def spectral_naturalness(prototypes: torch.Tensor, probe: torch.Tensor, reference=None) -> torch.Tensor:
    """(U,): each prototype's spectral distance from the probe images' mean, over a probe image's
    median; `reference`: `spectral_reference(probe)` when it is known already."""
    mean, typical = reference if reference is not None else spectral_reference(probe)
    return (radial_log_spectrum(prototypes.cpu()) - mean).pow(2).mean(1).sqrt() / typical.clamp_min(1e-12)


def robustness(model, layer: str, units: list[int], prototypes: torch.Tensor, draws: int = 4,
               seed: int = 0, plain: torch.Tensor | None = None) -> torch.Tensor:
    """(U,): the mean of each unit's studied value over `draws` random small transforms of its
    prototype (the engine's `robust_forward`), over its value on the prototype itself (`plain`,
    when known; NaN where that is not positive). The moved images go through the engine's forward,
    cropped to what the studied cell sees."""
    from ..synth.robust import robust_forward

    size = tuple(int(v) for v in prototypes.shape[-2:])
    forward = _memo(("crop", id(model), layer, size), model, lambda: _cropped(model, layer, size))
    rows = torch.arange(len(units), device=prototypes.device)
    index = torch.as_tensor(units, device=prototypes.device)

    def value(x: torch.Tensor) -> torch.Tensor:
        return forward(x)[rows, index, 0, 0].float()

    moved = robust_forward(value, seed=seed)
    with torch.no_grad():
        plain = value(prototypes) if plain is None else plain.to(prototypes.device)
        mean = torch.stack([moved(prototypes) for _ in range(draws)]).mean(0)
    return torch.where(plain > 0, mean / plain.clamp_min(1e-12), torch.nan).cpu()


def _cropped(model, layer: str, size: tuple[int, int]):
    """images -> (B, C, 1, 1): the studied cell, from the input region it sees (`synth.layer`)."""
    from ..synth.layer import layer_forward

    cell = studied_cell(model, layer, size)
    if size[0] != size[1]:  # crop plans are made for square images
        net = _truncated(model, layer)
        return lambda x: net(normalize(x))[layer][:, :, cell[0]:cell[0] + 1, cell[1]:cell[1] + 1]
    return layer_forward(model, layer, size[0], crop=True, channels_last=False, position=cell)[0]


# --------------------------------------------------------------------------
# The scores of one net's prototypes in a call (the API), each from a model
# --------------------------------------------------------------------------


def path_similarity(model, layer: str, units: list[int], prototypes: torch.Tensor, probe: torch.Tensor,
                    earlier: list[str], k: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """{earlier layer: (U,)} path similarity of each unit's prototype (row u of `prototypes`, float
    (U, 3, S, S) in [0, 1]) against its top-`k` probe images (`probe`, (P, 3, S, S))."""
    natural, made = responses(model, [*earlier, layer], probe), responses(model, earlier, prototypes)
    top, random = exemplars(natural.cells[layer][:, units], k, seed)
    return {l: path_from(made.means[l], natural.means[l], top, random) for l in earlier}


def plausibility(model, layer: str, units: list[int], prototypes: torch.Tensor, probe: torch.Tensor,
                 embed, embed_layer: str, k: int = 8, seed: int = 0) -> torch.Tensor:
    """(U,): how much nearer each prototype lies to its unit's top-k probe images than to k random
    ones, in `embed`'s `embed_layer` (means over positions; cosine distance)."""
    top, random = exemplars(centre_values(model, layer, probe)[:, units], k, seed)
    return plausibility_from(pooled(embed, embed_layer, prototypes), pooled(embed, embed_layer, probe), top, random)


def transfer(other, layer: str, partners: list[int], prototypes: torch.Tensor, probe: torch.Tensor,
             quantile: float = 0.99) -> torch.Tensor:
    """(U,): partner unit `partners[u]` of net `other` (-1: none, NaN) on prototype u, over the
    partner's `quantile` on the probe images, both at the studied cell."""
    return transfer_from(centre_values(other, layer, prototypes), centre_values(other, layer, probe), partners,
                         quantile)


# --------------------------------------------------------------------------
# Every score of a layer's prototypes, the probe images passed once per net
# --------------------------------------------------------------------------


@dataclass
class TrustScores:
    """One layer's prototypes scored against natural images, one value per unit (row u: `units[u]`).

    `path_similarity`: {earlier layer: (U,)}, chance 0; `spectral_naturalness` (U,), 1 = a typical
    stimulus image, larger less natural; `robustness` (U,), 1 = nothing lost under small moves;
    `natural_ratio` (U,): the prototype's score over the best stimulus image's value at the same
    position (below 1: a natural image drives the unit harder than its prototype; inf: no stimulus
    image excites it there; NaN: neither does). With an embedding net, `plausibility` (U,), chance
    0; with a partner net, `transfer` (U,): above 1, the partner responds as to its top 1 % of
    natural images."""

    units: list[int]
    path_similarity: dict[str, np.ndarray]
    spectral_naturalness: np.ndarray
    robustness: np.ndarray
    natural_ratio: np.ndarray
    plausibility: np.ndarray | None = None
    transfer: np.ndarray | None = None

    @property
    def path_mean(self) -> np.ndarray:
        """(U,): path similarity averaged over the earlier layers (NaN when there are none)."""
        if not self.path_similarity:
            return np.full(len(self.units), np.nan, np.float32)
        return np.mean(np.stack(list(self.path_similarity.values())), axis=0)


class Judge:
    """What judging a net's prototypes against a stimulus set needs once per checkpoint: the
    stimulus images passed once through the studied net (every layer), the partner net and the
    embedding net, and their spectrum. Then `score` each layer's prototypes.

    `embed`: (net, layer) or precomputed (N, F) stimulus embeddings with their net and layer,
    `(net, layer, features)`; `partner`: another net whose units `score` is given partners in, at
    `partner_layers` (default: `layers`)."""

    def __init__(self, model, layers: list[str], images: torch.Tensor, *, embed: tuple | None = None,
                 partner=None, partner_layers: list[str] | None = None, k: int = 8, draws: int = 4, seed: int = 0):
        self.model, self.images, self.k, self.draws, self.seed = model, images, k, draws, seed
        self.natural = responses(model, layers, images)
        self.spectrum = spectral_reference(images)
        self.partner = partner
        self.partner_natural = None if partner is None else responses(partner, partner_layers or layers, images)
        self.embed = embed
        if embed is not None and len(embed) == 2:
            self.embed = (*embed, pooled(embed[0], embed[1], images))

    def score(self, layer: str, units: list[int], prototypes: torch.Tensor, earlier: list[str],
              partners: list[int] | None = None) -> TrustScores:
        """Scores of `prototypes` (float (U, 3, S, S) in [0, 1]) of `units` of `layer`."""
        made = responses(self.model, [*earlier, layer], prototypes)
        top, random = exemplars(self.natural.cells[layer][:, units], self.k, self.seed)
        rows = torch.arange(len(units))
        own = made.cells[layer][rows, torch.as_tensor(units)]
        path = {l: path_from(made.means[l], self.natural.means[l], top, random).numpy() for l in earlier}
        robust = robustness(self.model, layer, units, prototypes, self.draws, self.seed, plain=own)
        best = self.natural.cells[layer][:, units].max(0).values
        plausible = moved = None
        if self.embed is not None:
            net, embed_layer, natural = self.embed
            plausible = plausibility_from(pooled(net, embed_layer, prototypes), natural, top, random).numpy()
        if self.partner is not None and partners is not None:
            made_partner = responses(self.partner, [layer], prototypes).cells[layer]
            moved = transfer_from(made_partner, self.partner_natural.cells[layer], partners).numpy()
        return TrustScores(list(units), path, spectral_naturalness(prototypes, self.images, self.spectrum).numpy(),
                           robust.numpy(), natural_ratio(own, best).numpy(), plausible, moved)


# --------------------------------------------------------------------------
# Which prototypes count as trustworthy
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """A prototype is trustworthy (faithful) when it reaches its unit by the path natural images
    take (`path` above chance) and survives small moves (`robustness`). Where set, it must also
    not be made of frequencies no stimulus image has (`spectral` typical distances at most) and
    look more like its unit's top images than random ones (`plausibility` above it)."""

    path: float = 0.1
    robustness: float = 0.5
    spectral: float | None = None
    plausibility: float | None = None


def trustworthy(scores: TrustScores, thresholds: Thresholds = Thresholds()) -> np.ndarray:
    """(U,) bool. A score that is NaN (a silent unit) counts as failed, except a missing path
    similarity at a net's first studied layer, which has no earlier one to compare with."""
    with np.errstate(invalid="ignore"):
        ok = scores.robustness >= thresholds.robustness
        if scores.path_similarity:
            ok &= scores.path_mean >= thresholds.path
        if thresholds.spectral is not None:
            ok &= scores.spectral_naturalness <= thresholds.spectral
        if thresholds.plausibility is not None and scores.plausibility is not None:
            ok &= scores.plausibility > thresholds.plausibility
    return ok
