"""Trust scores of prototypes for a model in memory (issue #28; the scores: `analyze/trust.py`)."""

from __future__ import annotations

import numpy as np
import torch

from ..analyze.trust import TrustScores
from ..errors import UserError
from .inputs import as_images, check_layer, conv_units, layer_shape, run_device


def trust(model, layer: str, prototypes, images, *, units=None, earlier: list[str] | None = None, k: int = 8,
          draws: int = 4, seed: int = 0, embed: tuple | None = None, partner: tuple | None = None,
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
            embedding = None if embed is None else (embed[0], check_layer(embed[0], embed[1]))
            judge = scores.Judge(model, [*earlier, layer], natural, embed=embedding,
                                 partner=None if partner is None else partner[0], partner_layers=[layer], k=k,
                                 draws=draws, seed=seed)
            partners = None if partner is None else _partners(partner[1], len(units))
            return judge.score(layer, list(units), made, earlier, partners)
    finally:
        for m, mode in zip([model, *others], was):
            m.train(mode)


def _partners(partners, n: int) -> list[int]:
    found = [int(p) for p in np.asarray(partners).reshape(-1)]
    if len(found) != n:
        raise UserError(f"partner: {n} prototypes need {n} partner units (-1 for none), one each; got {len(found)}.")
    return found


def _earlier(model, layer: str) -> list[str]:
    """The model's top-level children that come before `layer`'s own."""
    top = layer.split(".")[0].split("[")[0]
    names = [name for name, _ in model.named_children()]
    return names[: names.index(top)] if top in names else []
