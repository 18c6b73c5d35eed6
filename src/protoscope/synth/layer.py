"""One layer of a model made ready for the engine once, then prototypes of its units for any seed.

`protoscope.prototypes` (a model in memory) and the `evolve` stage (a study) run the same two
functions: `prepare` — the forward pass truncated at the layer, cropped to the input region
the centre unit sees, and the layer's pre-ReLU view for the search phases — and
`layer_prototypes`, the engine on it. Why two: preparing traces the network (about 0.1 s),
and the stage prepares once per (run, layer), then loads each checkpoint into the same model
(the traced graph shares its parameters), instead of once per (epoch, layer, repeat).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from ..data.datasets import normalize
from ..nets.layers import truncate
from .engine import EngineConfig, Forward, Prototypes, synthesize
from .fold import fold_batchnorm
from .generators import Generator
from .objectives import ChannelCentre, ChannelMean, Objective
from .position import UnitPosition, unit_position
from .receptive import crop_plan

OBJECTIVES = ("centre", "mean")


def make_objective(kind: str, units: int | Sequence[int], at: tuple[int, int] | None = None) -> Objective:
    """The channel objective for `units` (a count: channels 0 .. units - 1, or a list of channels);
    a centre objective reads map cell `at` (default: the middle cell)."""
    units = range(units) if isinstance(units, int) else units
    return ChannelCentre(units, at) if kind == "centre" else ChannelMean(units)


def layer_forward(model: nn.Module, layer: str, image_size: int, crop: bool, plan="auto",
                  channels_last: bool = True, position: tuple[int, int] | None = None,
                  fold: bool = False) -> tuple[Forward, object]:
    """images in [0, 1] -> the layer's activation; with `crop`, only the studied unit's cell.

    With `crop` the forward returns a (B, C, 1, 1) activation holding exactly the full image's
    unit at `position` (default `unit_position`'s), computed on the input region that cell sees
    (`plan`), or read off the full map when no crop saves anything (`plan` None); a centre
    objective reads the same value either way. `plan` may be passed in: it depends on the
    architecture only, not the weights. Images enter channels-last (NHWC), the layout oneDNN and
    cuDNN convolve fastest in bf16 (evolve puts the weights in it too); `channels_last=False`
    keeps the default NCHW layout. `fold`: each conv → BatchNorm pair of the traced graph runs as
    one convolution (`fold.py`; the engine's forward, equal up to float rounding in eval mode).
    """
    net = truncate(model, layer)
    if fold and net.body is not None:
        fold_batchnorm(net.body)
    if crop and position is None:
        found = unit_position(model, layer, image_size)
        position = (found.y, found.x)
    if plan == "auto":
        plan = crop_plan(model, layer, image_size, position=position) if crop else None

    layout = torch.channels_last if channels_last else torch.contiguous_format

    def prepared(x: torch.Tensor) -> torch.Tensor:
        return normalize(x).contiguous(memory_format=layout)

    if not crop:
        return (lambda x: net(prepared(x))[layer]), None
    y, x0 = (plan.out_y, plan.out_x) if plan is not None else position
    source = plan.crop if plan is not None else (lambda images: images)

    def cell(x: torch.Tensor) -> torch.Tensor:
        return net(prepared(source(x)))[layer][:, :, y:y + 1, x0:x0 + 1]

    return cell, plan


def pre_activation(model: nn.Module, layer: str, forward: Forward, image_size: int, plan=None,
                   cell: tuple[int, int] | None = None) -> Forward | None:
    """`forward`'s view of the layer *before* its final ReLU, or None when the layer does not end in one.

    Why: behind a ReLU a silent unit scores 0 for every image, a flat landscape
    that no search can climb; its pre-activation still ranks images by how close
    they come to waking it, and wherever it is positive it equals the score.
    Read with forward pre-hooks on the layer's `nn.ReLU` modules (the last call's
    input, copied before an in-place ReLU overwrites it); checked once against
    `forward` on random images, so an architecture where the last ReLU is not
    the output gets None rather than a wrong surrogate. `plan` and `cell` as `forward` was made
    with (`layer_forward`): the pre-activation is read at the same cell.
    """
    try:
        module = model.get_submodule(layer)
    except AttributeError:  # a graph-node address, not a module
        return None
    relus = [m for m in module.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        return None

    def search(images: torch.Tensor) -> torch.Tensor:
        last: list[torch.Tensor] = []

        def keep(_module, args):
            last[:] = [args[0].clone()]

        handles = [relu.register_forward_pre_hook(keep) for relu in relus]
        try:
            forward(images)
        finally:
            for handle in handles:
                handle.remove()
        pre = last[0]
        if plan is not None:
            return pre[:, :, plan.out_y : plan.out_y + 1, plan.out_x : plan.out_x + 1]
        return pre if cell is None else pre[:, :, cell[0] : cell[0] + 1, cell[1] : cell[1] + 1]

    device = next(model.parameters(), torch.empty(0)).device
    with torch.no_grad():
        images = torch.rand(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0)).to(device)
        out, pre = forward(images), search(images)
    if pre.shape != out.shape or not torch.allclose(torch.relu(pre), out, atol=1e-5):
        return None
    return search


def layer_units(model: nn.Module, layers: list[str], image_size: int) -> dict[str, int]:
    """Channels (or features) of each layer, from one forward pass."""
    was = model.training
    model.eval()
    with torch.no_grad():
        out = truncate(model, layers)(torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device))
    model.train(was)
    return {layer: out[layer].shape[1] for layer in layers}


@dataclass(frozen=True)
class PreparedLayer:
    """A layer ready for the engine: `forward` (the studied cell only when `crop`), the pre-ReLU `search`,
    and `position`, the map cell a centre objective studies (`position.UnitPosition`; None for a mean)."""

    layer: str
    image_size: int
    objective: str
    forward: Forward
    plan: object  # receptive.CropPlan | None
    search: Forward | None
    position: UnitPosition | None = None
    crop: bool = False  # the forward returns the studied cell only

    @property
    def objective_cell(self) -> tuple[int, int] | None:
        """Where the objective reads the forward's output: its single cell when cropped, else the position."""
        if self.position is None or self.crop:
            return None
        return self.position.y, self.position.x


def prepare(model: nn.Module, layer: str, image_size: int, objective: str = "centre",
            crop: bool = True) -> PreparedLayer:
    """Trace `model` at `layer` for `image_size` images. The model should already be in the state
    the engine runs it in (eval, frozen, channels-last: see `protoscope.api`): tracing keeps its modules.
    A centre objective studies the cell whose receptive field is centred in the image (`unit_position`)."""
    position = unit_position(model, layer, image_size) if objective == "centre" else None
    can_crop = crop and objective == "centre"  # a spatial mean needs the whole image
    cell = None if position is None else (position.y, position.x)
    forward, plan = layer_forward(model, layer, image_size, can_crop, position=cell, fold=True)
    # the search phases climb the unit's pre-activation (one position: relu(pre) is the score)
    search = (pre_activation(model, layer, forward, image_size, plan, cell if can_crop else None)
              if objective == "centre" else None)
    return PreparedLayer(layer, image_size, objective, forward, plan, search, position, can_crop)


def layer_prototypes(prepared: PreparedLayer, generator: Generator, units: int | Sequence[int], *, seed: int,
                     config: EngineConfig, device: torch.device, bf16: bool,
                     on_phase: Callable[[str, int], None] | None = None,
                     starts: torch.Tensor | None = None) -> Prototypes:
    """The engine's prototypes for `units` (a count, or a list of channels) of a prepared layer;
    `starts`: latents of natural images the pool also scores (`natural_starts`)."""
    objective = make_objective(prepared.objective, units, prepared.objective_cell)
    return synthesize(prepared.forward, generator, objective, seed=seed, config=config, device=device, bf16=bf16,
                      on_phase=on_phase, search_forward=prepared.search, starts=starts)


def natural_starts(generator: Generator, images: torch.Tensor, count: int) -> torch.Tensor | None:
    """Latents of the first `count` of `images` (uint8 or [0, 1], any size: resized to the
    generator's), or None for none; a prior without an encoder is refused in one line."""
    from ..errors import UserError

    if not count:
        return None
    x = images[:count].float()
    x = x / 255 if images.dtype == torch.uint8 else x
    size = generator.image_size
    if x.shape[-2:] != (size, size):
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    try:
        with torch.no_grad():
            return generator.encode(x.clamp(0, 1).to(generator.device))
    except NotImplementedError as err:
        raise UserError(f"{err} (synth.natural_starts: 0 turns natural starts off)") from None
