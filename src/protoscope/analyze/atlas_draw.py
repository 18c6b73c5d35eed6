"""The model-facing steps of an activation atlas (`analyze/atlas.py` has the numeric ones).

`protoscope.atlas` (models in memory) and the `atlas` stage (a study's checkpoints) both run
`layer_samples` — each image's activation vector at one seeded random position — and
`draw_cells` — the grid, the whitened directions and every filled cell's icon from one engine
run. The layout between them (`aligned_layout` / `shared_layout`) is plain numpy.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .atlas import grid_average, sample_activations, sample_positions, whiten


@torch.no_grad()
def layer_samples(model: nn.Module, layer: str, images: torch.Tensor, seed: int, device,
                  batch: int = 256) -> np.ndarray:
    """(N, C): each image's activation vector at one random position (the same at every checkpoint).

    `images` are uint8, or float in [0, 1], (N, 3, H, W); the model is used as it is (eval mode
    is the caller's business)."""
    from ..synth.layer import layer_forward

    forward, _ = layer_forward(model, layer, images.shape[-1], crop=False, channels_last=False)
    out, positions = [], None
    for start in range(0, len(images), batch):
        x = images[start:start + batch].to(device)
        acts = forward(x.float() / 255 if x.dtype == torch.uint8 else x.float()).float()
        if positions is None and acts.ndim == 4:
            positions = sample_positions(len(images), acts.shape[2], acts.shape[3], seed)
        part = slice(start, start + len(acts))
        out.append(sample_activations(acts.cpu().numpy(), *(p[part] for p in positions)) if acts.ndim == 4
                   else acts.flatten(1).cpu().numpy())
    return np.concatenate(out)


def draw_cells(model: nn.Module, layer: str, acts: np.ndarray, layout: np.ndarray, spec, generator, device,
               seed: int) -> dict:
    """One map's arrays: the grid of `layout` (N, 2) over `acts` (N, C), whitened directions, and an
    icon per filled cell from one engine run (`generator`'s size; the budget of `spec`, an `AtlasSpec`).

    Returns {layout, count, direction, icon, score}: empty cells have NaN directions and scores and
    black icons."""
    from ..synth.engine import EngineConfig, synthesize
    from ..synth.layer import layer_forward
    from ..synth.objectives import DirectionCosine
    from ..synth.robust import robust_forward

    grid = grid_average(layout, acts, spec.grid, spec.min_count)
    directions = np.full(grid.means.shape, np.nan, np.float32)
    filled = np.flatnonzero(grid.filled)
    size = generator.image_size
    icons = np.zeros((len(grid.counts), size, size, 3), np.uint8)
    scores = np.full(len(grid.counts), np.nan, np.float32)
    if len(filled):
        directions[filled] = whiten(grid.means[filled], acts)
        forward, _ = layer_forward(model, layer, size, crop=False)
        if spec.robust:
            forward = robust_forward(forward, seed)
        objective = DirectionCosine(torch.as_tensor(directions[filled]), position="centre", power=spec.power)
        # a fixed batch size: the engine would measure one from memory, and a transform is drawn per forward call
        config = EngineConfig(pool_size=spec.pool_size, cma_generations=0, adam_steps=spec.adam_steps,
                              patience=max(spec.adam_steps, 1), batch_size=spec.batch_size)
        result = synthesize(forward, generator, objective, seed=seed, config=config, device=device)
        icons[filled], scores[filled] = result.images.numpy(), result.score.numpy()
    return {"layout": layout.astype(np.float32), "count": grid.counts.astype(np.int32),
            "direction": directions, "icon": icons, "score": scores}
