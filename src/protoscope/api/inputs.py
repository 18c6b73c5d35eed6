"""What a user hands the in-memory API, checked before any work: models, a layer, a device, an
image size, images. Every mistake is a `UserError` that names the fix.

The caller's model is never moved or copied: a device that is not the model's is an error, not a
silent `.to()`. The engine's running state (eval mode, frozen weights, channels-last) is set for
the call and restored after it (`engine_state`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from ..errors import UserError, did_you_mean


def as_models(models, function: str, stage: str | None = None) -> tuple[list[nn.Module], bool]:
    """(the models, whether several were given): one `nn.Module`, or a list / tuple of them."""
    several = isinstance(models, (list, tuple))
    listed = list(models) if several else [models]
    if several and not listed:
        raise UserError(f"protoscope.{function} got an empty list of models.")
    for model in listed:
        check_model(model, function, stage)
    return listed, several


def check_model(model, function: str, stage: str | None = None) -> nn.Module:
    from ..study import Study

    if isinstance(model, Study):
        verb = stage or function
        raise UserError(f"protoscope.{function} takes a model in memory (an nn.Module); a study's `{verb}` stage "
                        f"is protoscope.stages.{verb}(study).")
    if not isinstance(model, nn.Module):
        raise UserError(f"protoscope.{function} takes torch nn.Module models, got {type(model).__name__}.")
    return model


def model_device(model: nn.Module) -> torch.device | None:
    """Where the model's tensors are (None for a model without any); one device, or an error."""
    devices = {t.device for t in (*model.parameters(), *model.buffers())}
    if len(devices) > 1:
        raise UserError(f"The model's tensors are on several devices ({', '.join(sorted(map(str, devices)))}); "
                        "put it on one with model.to(device).")
    return devices.pop() if devices else None


def _same(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index or 0) == (b.index or 0)


def run_device(models: list[nn.Module], device) -> torch.device:
    """The device to run on: the models' own for "auto"; any other must be where the models are."""
    from ..runtime import resolve_device

    homes = [d for d in (model_device(m) for m in models) if d is not None]
    if any(not _same(d, homes[0]) for d in homes):
        raise UserError(f"The models are on different devices ({', '.join(sorted(set(map(str, homes))))}); "
                        "put them on one with model.to(device).")
    home = homes[0] if homes else None
    if device is None or str(device) == "auto":
        return home or torch.device("cpu")
    wanted = resolve_device(str(device))
    if home is not None and not _same(home, wanted):
        raise UserError(f"The model is on {home}, but device={str(device)!r} was asked for. protoscope does not "
                        f"move your model: call model.to({str(wanted)!r}) first, or pass device='auto'.")
    return home or wanted


def check_layer(model: nn.Module, layer) -> str:
    from ..nets.layers import check_layers

    if not isinstance(layer, str):
        raise UserError(f"A layer is a module name such as 'layer3' or 'features.8', got {type(layer).__name__}.")
    return check_layers(model, [layer])[0]


def layer_shape(model: nn.Module, layer: str, size: tuple[int, int], device: torch.device) -> tuple[int, ...]:
    """The layer's output shape for one image of `size` (H, W); an image the model cannot take is a UserError."""
    from ..nets.layers import truncate

    if any(not isinstance(s, (int, np.integer)) or s < 1 for s in size):
        raise UserError(f"Image size must be a positive integer, got {size}.")
    with engine_state(model, frozen=False), torch.no_grad():
        try:
            out = truncate(model, layer)(torch.zeros(1, 3, *size, device=device))[layer]
        except (RuntimeError, AssertionError) as err:  # a shape mismatch, or the model's own check of its input
            reason = re.sub(r"Proxy\(\w+\)", "another size", str(err).strip().splitlines()[0])  # a traced value
            raise UserError(f"{type(model).__name__} cannot take {size[0]}x{size[1]} images up to layer {layer!r}: "
                            f"{reason}. Use images of the size it was made for.") from None
    return tuple(out.shape)


def conv_units(shape: tuple[int, ...], layer: str, units) -> list[int]:
    """The channels asked for (default: all) of a conv layer's (1, C, H, W) output."""
    if len(shape) != 4:
        raise UserError(f"Layer {layer!r} gives {len(shape)}-D activations {shape}; prototypes and receptive "
                        "fields need a conv layer's (N, C, H, W) output.")
    if units is None:
        return list(range(shape[1]))
    if isinstance(units, (torch.Tensor, np.ndarray)):
        units = units.tolist()
    chosen = [units] if isinstance(units, int) else list(units)
    if not chosen or any(not isinstance(u, (int, np.integer)) or not 0 <= u < shape[1] for u in chosen):
        raise UserError(f"units must be channel indices of {layer!r} (0 .. {shape[1] - 1}), got {units!r}.")
    return [int(u) for u in chosen]


@contextlib.contextmanager
def engine_state(model: nn.Module, frozen: bool = True):
    """The model in eval mode (and with `frozen`: no weight gradients, channels-last weights, as the
    evolve stage runs it) for the call; every module's mode, flag and layout restored after."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    was_channels_last = any(p.ndim == 4 and not p.is_contiguous() for p in model.parameters())
    model.eval()
    if frozen:
        model.to(memory_format=torch.channels_last).requires_grad_(False)
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
        for param, flag in flags:
            param.requires_grad_(flag)
        if frozen and not was_channels_last:
            model.to(memory_format=torch.contiguous_format)


def options(cls, given: dict, function: str, drop: tuple[str, ...] = ()):
    """`cls(**given)` for a dataclass or a study section (pydantic): an unknown or bad option is a
    UserError listing the valid ones; `drop` are the section's fields the function sets itself."""
    import pydantic

    fields = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else list(cls.model_fields)
    valid = [f for f in fields if f not in drop]
    for name in given:
        if name not in valid:
            raise UserError(f"protoscope.{function} has no option {name!r}.{did_you_mean(name, valid)}")
    try:
        return cls(**given)
    except pydantic.ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise UserError(f"protoscope.{function}: {problems}") from None
    except (TypeError, ValueError) as err:
        raise UserError(f"protoscope.{function}: {err}") from None


def as_generator(generator, options: Mapping | None, image_size: int | None, device: torch.device):
    """A generator by name (with its options), or the user's own `Generator`, on `device`; and its image size."""
    from ..synth.generators import Generator, sized_generator

    if isinstance(generator, Generator):
        if options:
            raise UserError("generator_options are for a generator given by name; yours is already built.")
        size = int(generator.image_size)
        if image_size is not None and image_size != size:
            raise UserError(f"image_size={image_size} but the generator makes {size}x{size} images.")
        return generator.to(device), size
    if not isinstance(generator, str):
        raise UserError(f"generator must be a name (fourier, pixel, deepsim-fc6) or a protoscope Generator, "
                        f"got {type(generator).__name__}.")
    built = sized_generator(generator, 96 if image_size is None else image_size, options).to(device)  # 96: the seed's
    return built, int(built.image_size)


def as_images(images, labels=None) -> tuple[torch.Tensor, np.ndarray | None]:
    """(N, 3, H, W) images — uint8, or float in [0, 1] — and their labels (given, or a loader's).

    `images` is a tensor or array ((N, H, W, 3) is taken too: prototypes as returned), or a
    DataLoader / iterable of batches, each a tensor or an (images, labels, ...) tuple; a loader is
    read once, into memory."""
    if isinstance(images, (torch.Tensor, np.ndarray)):
        x = torch.as_tensor(images)
    else:
        x, found = _read_batches(images)
        labels = found if labels is None else labels
    if x.ndim == 3:
        x = x[None]
    if x.ndim == 4 and x.shape[1] != 3 and x.shape[-1] == 3:
        x = x.permute(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] != 3 or not len(x):
        raise UserError(f"Images must be RGB, (N, 3, H, W) with N >= 1; got shape {tuple(x.shape)}.")
    if x.dtype != torch.uint8:
        if not x.is_floating_point():
            raise UserError(f"Images must be uint8, or float in [0, 1]; got {x.dtype}.")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            raise UserError(f"Float images must be in [0, 1], these span [{lo:.3g}, {hi:.3g}]: protoscope normalizes "
                            "with ImageNet statistics itself, so leave Normalize out of your transforms.")
    if labels is not None:
        labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
        if labels.shape != (len(x),):
            raise UserError(f"{len(x)} images need {len(x)} labels, one each; got shape {labels.shape}.")
    return x, labels


def _read_batches(loader) -> tuple[torch.Tensor, torch.Tensor | None]:
    try:
        batches = iter(loader)
    except TypeError:
        raise UserError(f"Images must be a tensor, an array or a DataLoader, got {type(loader).__name__}.") from None
    images, labels = [], []
    for batch in batches:
        if isinstance(batch, (list, tuple)):
            images.append(torch.as_tensor(batch[0]))
            if len(batch) > 1:
                labels.append(torch.as_tensor(batch[1]))
        else:
            images.append(torch.as_tensor(batch))
    if not images:
        raise UserError("The data loader gave no images.")
    found = torch.cat(labels) if labels and len(labels) == len(images) else None
    return torch.cat(images), found
