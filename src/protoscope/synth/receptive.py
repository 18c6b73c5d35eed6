"""Receptive fields of a layer's studied unit: where in the image it looks, as `evolve` stores it.

Prototypes are made for one cell of each channel, the one whose receptive field is centred
in the image (`position.unit_position`),
and compared after weighting by a receptive-field mask. This module measures the
*effective* receptive field (:func:`rf_map`: how strongly each input pixel moves
that unit, averaged over noise images) and bundles it with its Gaussian fit and
mask (:func:`measure_receptive_field`). What it builds on lives beside it and is
re-exported here, so imports from this module keep working:

* `crop.py` – the theoretical receptive field and exact, stride-aligned input
  crops (`centre_input_box`, `CropPlan`, `crop_plan`, `centre_activation`);
* `gaussian.py` – the Gaussian fit and masks (`GaussianFit`, `fit_gaussian`,
  `gaussian_mask`, `rf_mask`).

All maps are in input-pixel coordinates.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal, Sequence

import torch
from torch import Tensor, nn

from ..data.datasets import IMAGENET_MEAN, IMAGENET_STD
from ..errors import UserError
from ..nets.layers import truncate
from .crop import CropPlan, _size2, _spatial, centre_activation, centre_input_box, crop_plan
from .gaussian import GaussianFit, fit_gaussian, gaussian_mask, rf_mask
from .objectives import centre_index  # noqa: F401  (re-exported: its old import path)
from .position import unit_position

__all__ = [
    "rf_map",
    "GaussianFit",
    "fit_gaussian",
    "gaussian_mask",
    "rf_mask",
    "centre_input_box",
    "CropPlan",
    "crop_plan",
    "centre_activation",
    "ReceptiveField",
    "measure_receptive_field",
]

Reduce = Literal["square", "abs"]


def _normalize(x: Tensor) -> Tensor:
    """[0, 1] images -> the ImageNet-normalized input every network sees."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def _model_device(model: nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


# --------------------------------------------------------------------------
# Gradient (effective) receptive-field maps
# --------------------------------------------------------------------------


def _reduce(g: Tensor, reduce: Reduce) -> Tensor:
    """Per-image gradient (…, 3, h, w) -> per-image spatial map (…, h, w).

    ``"square"`` weights pixels by gradient energy (the diagonal of the
    gradient's second-moment matrix, the usual effective-receptive-field
    definition); ``"abs"`` is the seed's mean |gradient|. Same support, nearly
    the same centre, but the square is more peaked: on random-init ResNet-18s
    at 96 px its fitted sigmas are about 0.55x the seed's (a squared Gaussian
    alone would give 1/sqrt(2)), so its masks are narrower.
    """
    if reduce == "square":
        return g.pow(2).sum(-3)
    return g.abs().mean(-3)


def _noise_batches(n_samples: int, batch_size: int, size: tuple[int, int], generator):
    """Uniform [0, 1] noise drawn on the CPU (so a seed gives the same images on any device)."""
    done = 0
    while done < n_samples:
        b = min(batch_size, n_samples - done)
        yield torch.rand(b, 3, *size, generator=generator)
        done += b


def _as_unit_list(units, n_channels: int, layer: str) -> list[int] | None:
    if units is None:
        return None
    if isinstance(units, str):
        if units != "all":
            raise UserError(f"units must be None, 'all' or a list of channel indices, got {units!r}")
        return list(range(n_channels))
    out = [int(u) for u in (units.tolist() if isinstance(units, Tensor) else units)]
    if not out:
        raise UserError("units must not be empty")
    bad = [u for u in out if not 0 <= u < n_channels]
    if bad:
        raise UserError(f"Units {bad[:5]} are out of range for layer {layer!r} with {n_channels} channels.")
    return out


def _check_map_options(reduce: str, n_samples: int, batch_size: int) -> None:
    if reduce not in ("square", "abs"):
        raise UserError(f"reduce must be 'square' or 'abs', got {reduce!r}")
    if n_samples < 1 or batch_size < 1:
        raise UserError("n_samples and batch_size must be positive")


def _on_device(model: nn.Module, device: str | torch.device | None) -> tuple[nn.Module, torch.device]:
    """The model on `device` (a copy when that is not where it lives) and that device."""
    home = _model_device(model)
    device = home if device is None else torch.device(device)
    if device != home:
        model = copy.deepcopy(model).to(device)
    return model, device


def _resolve_plan(model: nn.Module, layer: str, size: tuple[int, int], plan) -> CropPlan | None:
    """`plan="auto"` made into a crop plan; a given plan checked against the image size."""
    h, w = size
    if plan == "auto":
        return crop_plan(model, layer, (h, w))
    if plan is not None and tuple(plan.image_size) != (h, w):
        raise UserError(f"The crop plan is for {plan.image_size[0]}x{plan.image_size[1]} images, not {h}x{w}.")
    return plan


def rf_map(
    model: nn.Module,
    layer: str,
    image_size: int | Sequence[int],
    n_samples: int = 500,
    batch_size: int = 64,
    units: None | str | Sequence[int] | Tensor = None,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
    reduce: Reduce = "square",
    plan: CropPlan | None | Literal["auto"] = "auto",
) -> Tensor:
    """Effective receptive field of the centre unit: E_noise[ ‖∂ unit / ∂ pixel‖² ] as an (H, W) map.

    The gradient of the centre unit's activation with respect to the [0, 1]
    image (ImageNet-normalized before the net), reduced over colour and
    averaged over `n_samples` uniform-noise images.

    * ``units=None`` (default): one ``(H, W)`` map for the layer, the objective
      being the mean over channels at the centre (the seed's): one backward per batch.
    * ``units="all"`` or a list of channels: one map per channel, ``(U, H, W)``;
      each noise batch's forward pass is shared by the U backward passes.

    ``reduce="square"`` (default) sums squared gradients over colour;
    ``"abs"`` reproduces the seed (see `_reduce` for how they differ).

    Only pixels inside the theoretical receptive field can have a gradient, so
    with ``plan="auto"`` the net runs on the crop from :func:`crop_plan` and the
    map is exactly zero elsewhere; ``plan=None`` uses the full image. The noise
    is drawn at full size either way, so the crop does not change the result.
    `device` defaults to the model's (another one runs on a copy). The model is
    used in eval mode and its mode restored. Deterministic for a seeded `generator`.
    """
    _check_map_options(reduce, n_samples, batch_size)
    h, w = _size2(image_size)
    model, device = _on_device(model, device)
    plan = _resolve_plan(model, layer, (h, w), plan)
    cell = plan.full_centre if plan is not None else _cell(unit_position(model, layer, (h, w)))
    was_training = model.training
    try:
        net = truncate(model, layer)
        model.eval()
        return _rf_map(net, layer, (h, w), n_samples, batch_size, units, generator, device, reduce, plan, cell)
    finally:
        model.train(was_training)


def _cell(position) -> tuple[int, int]:
    return position.y, position.x


def _centre_of(net: nn.Module, layer: str, x: Tensor, plan: CropPlan | None, cell: tuple[int, int]) -> Tensor:
    """(b, C): every channel of the studied unit (at `cell` of the full map) for a batch of [0, 1]
    images, or of their crops when `plan` is given."""
    acts = _spatial(net(_normalize(x))[layer], layer)
    py, px = cell if plan is None else (plan.out_y, plan.out_x)
    return acts[:, :, py, px]


def _add_maps(total: Tensor, centre: Tensor, x: Tensor, unit_list: list[int] | None, reduce: Reduce) -> None:
    """Add one batch's summed gradient maps to `total`: the layer's, or one per unit."""
    if unit_list is None:
        (g,) = torch.autograd.grad(centre.mean(1).sum(), x)
        total[0] += _reduce(g, reduce).sum(0).double()
        return
    for k, u in enumerate(unit_list):
        (g,) = torch.autograd.grad(centre[:, u].sum(), x, retain_graph=k + 1 < len(unit_list))
        total[k] += _reduce(g, reduce).sum(0).double()


def _rf_map(net, layer, size, n_samples, batch_size, units, generator, device, reduce, plan, cell) -> Tensor:
    h, w = size
    if plan is None:
        sl = (slice(0, h), slice(0, w))
    else:
        sl = (slice(plan.y0, plan.y1), slice(plan.x0, plan.x1))
    unit_list: list[int] | None = None
    total: Tensor | None = None
    for noise in _noise_batches(n_samples, batch_size, (h, w), generator):
        x = noise[:, :, sl[0], sl[1]].to(device).requires_grad_(True)
        centre = _centre_of(net, layer, x, plan, cell)
        if total is None:  # the channel count is known only after the first forward pass
            unit_list = _as_unit_list(units, centre.shape[1], layer)
            n_maps = 1 if unit_list is None else len(unit_list)
            total = torch.zeros(n_maps, x.shape[2], x.shape[3], dtype=torch.float64, device=device)
        _add_maps(total, centre, x, unit_list, reduce)
    full = torch.zeros(total.shape[0], h, w, dtype=torch.float64, device=device)
    full[:, sl[0], sl[1]] = total / n_samples
    full = full.float().cpu()
    return full[0] if unit_list is None else full


# --------------------------------------------------------------------------
# One measurement, as `evolve` stores it and `protoscope.receptive_field` returns it
# --------------------------------------------------------------------------


@dataclass
class ReceptiveField:
    """The centre unit's effective receptive field: its map, the Gaussian fitted to it and the mask
    from that fit (what prototypes are weighted by); per unit too when asked for. Maps are (H, W)
    float32 in input pixels; per-unit ones (U, H, W)."""

    map: Tensor
    mask: Tensor
    fit: GaussianFit
    unit_maps: Tensor | None = None
    unit_masks: Tensor | None = None


def measure_receptive_field(model: nn.Module, layer: str, image_size: int | Sequence[int], *, samples: int = 500,
                            per_unit: bool = False, seed: int = 0, device: str | torch.device | None = None,
                            plan: CropPlan | None | Literal["auto"] = "auto", batch_size: int = 64) -> ReceptiveField:
    """The layer's map (the mean over channels at the centre, the seed's) and, with `per_unit`, one
    map per channel drawn from the same seeded noise stream after it: what `evolve` stores."""
    rng = torch.Generator().manual_seed(int(seed))
    layer_map = rf_map(model, layer, image_size, n_samples=samples, batch_size=batch_size, generator=rng,
                       device=device, plan=plan)
    fit = fit_gaussian(layer_map)
    unit_maps = unit_masks = None
    if per_unit:
        unit_maps = rf_map(model, layer, image_size, n_samples=samples, batch_size=batch_size, units="all",
                           generator=rng, device=device, plan=plan)
        unit_masks = torch.stack([rf_mask(m) for m in unit_maps])
    return ReceptiveField(layer_map, gaussian_mask(fit, tuple(layer_map.shape)), fit, unit_maps, unit_masks)
