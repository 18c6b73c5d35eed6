"""Trust scores of prototypes for a model in memory (issue #28; the scores: `analyze/trust.py`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UserError
from .inputs import as_images, check_layer, conv_units, layer_shape, run_device


@dataclass
class TrustScores:
    """One layer's prototypes scored against natural images, one value per unit (row u: `units[u]`).

    `path_similarity`: {earlier layer: (U,)}, chance 0; `spectral_naturalness` (U,), 1 = a typical
    stimulus image, larger less natural; `robustness` (U,), 1 = nothing lost under small moves;
    `natural_ratio` (U,): the prototype's score over the best stimulus image's value at the same
    position (below 1: a natural image drives the unit harder than its prototype; inf: no stimulus
    image excites it there; NaN: neither does). With `embed`, `plausibility` (U,), chance 0; with
    `partner`, `transfer` (U,): above 1, the partner responds as to its top 1 % of natural images."""

    units: list[int]
    path_similarity: dict[str, np.ndarray]
    spectral_naturalness: np.ndarray
    robustness: np.ndarray
    natural_ratio: np.ndarray
    plausibility: np.ndarray | None = None
    transfer: np.ndarray | None = None


def trust(model, layer: str, prototypes, images, *, units=None, earlier: list[str] | None = None, k: int = 8,
          draws: int = 8, seed: int = 0, embed: tuple | None = None, partner: tuple | None = None,
          device="auto") -> TrustScores:
    """How far each prototype of `layer` can be trusted, judged by natural `images` (a stimulus set).

    `prototypes`: what `protoscope.prototypes` returned (or images, (U, 3, S, S) / (U, S, S, 3));
    `units`: the channel each row is of (default 0 .. U-1, as `prototypes` makes them without
    `units`); `earlier`: the layers path similarity compares at (default: the model's top-level
    children before `layer`'s); `k`: top and random stimulus images per unit; `embed`: (another
    net, its layer), the space plausibility is measured in; `partner`: (another net, each unit's
    partner there, -1 for none: `align(...).bipartite` pairs `units_` with `partner_`), for
    transfer. Writes nothing.
    """
    from ..analyze import trust as scores

    device = run_device([model], device)
    layer = check_layer(model, layer)
    made, _ = as_images(getattr(prototypes, "images", prototypes))
    natural, _ = as_images(images)
    made, natural = (x.float() / 255 if x.dtype == torch.uint8 else x.float() for x in (made, natural))
    shape = layer_shape(model, layer, tuple(made.shape[-2:]), device)
    units = conv_units(shape, layer, list(range(len(made))) if units is None else units)
    if len(units) != len(made):
        raise UserError(f"{len(made)} prototypes need {len(made)} unit indices, one each; got {len(units)}.")
    if len(natural) < 2 * k:
        raise UserError(f"Trust scores need at least {2 * k} stimulus images (k = {k} top and {k} random); "
                        f"got {len(natural)}.")
    earlier = _earlier(model, layer) if earlier is None else [check_layer(model, name) for name in earlier]
    others = [pair[0] for pair in (embed, partner) if pair is not None]
    was = [m.training for m in [model, *others]]
    for m in [model, *others]:
        m.eval()
    try:
        with scores.shared_passes():
            made, natural = made.to(device), natural.to(device)
            responses = scores.centre_values(model, layer, natural)[:, units]  # (P, U): one pass of the stimuli
            chosen = scores.exemplars(responses, k, seed)
            path = (scores.path_similarity(model, layer, units, made, natural, earlier, chosen=chosen)
                    if earlier else {})
            robust = scores.robustness(model, layer, units, made, draws=draws, seed=seed)
            best = responses.max(0).values
            own = scores.centre_values(model, layer, made)[torch.arange(len(units)), units]
            plausible = None if embed is None else scores.plausibility(
                model, layer, units, made, natural, embed[0], check_layer(embed[0], embed[1]),
                chosen=chosen).numpy()
            moved = None if partner is None else scores.transfer(
                partner[0], layer, _partners(partner[1], len(units)), made, natural).numpy()
    finally:
        for m, mode in zip([model, *others], was):
            m.train(mode)
    return TrustScores(list(units), {name: v.cpu().numpy() for name, v in path.items()},
                       scores.spectral_naturalness(made.cpu(), natural.cpu()).numpy(), robust.cpu().numpy(),
                       _ratio(own, best).cpu().numpy(), plausible, moved)


def _partners(partners, n: int) -> list[int]:
    found = [int(p) for p in np.asarray(partners).reshape(-1)]
    if len(found) != n:
        raise UserError(f"partner: {n} prototypes need {n} partner units (-1 for none), one each; got {len(found)}.")
    return found


def _ratio(own: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """own / best where a stimulus image excites the unit; inf where only the prototype does; NaN
    where neither does (a silent unit: nothing to compare)."""
    ratio = own / best.clamp_min(1e-12)
    return torch.where(best > 0, ratio, torch.where(own > 0, torch.inf, torch.nan))


def _earlier(model, layer: str) -> list[str]:
    """The model's top-level children that come before `layer`'s own."""
    top = layer.split(".")[0].split("[")[0]
    names = [name for name, _ in model.named_children()]
    return names[: names.index(top)] if top in names else []
