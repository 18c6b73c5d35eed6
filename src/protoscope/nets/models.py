"""Architectures by name: torchvision's, a ResNet-18 with a width multiplier, and a researcher's own.

The narrow ResNet-18 keeps torchvision's module names (`conv1`, `layer1` …
`layer4`, `avgpool`, `fc`), so a layer address means the same thing for the
demo's CPU-sized net and for the seed's full-size ResNet-18. A model from the
user's code is named by an import path to a factory, `package.module:function`
(any callable returning an `nn.Module`, a class included); `options` are passed
to the constructor of either kind.
"""

from __future__ import annotations

import importlib

import torch
from torch import nn
from torchvision import models as tvm
from torchvision.models.resnet import BasicBlock, ResNet

from ..errors import UserError, did_you_mean

# The classifier of each torchvision family, by the attribute it lives in; a backbone has it removed.
HEADS = ("fc", "classifier", "heads", "head")


class WideResNet18(ResNet):
    """ResNet-18 with every stage's width scaled, optionally with a small-image stem.

    torchvision's `ResNet` hard-codes 64 base channels for BasicBlocks, so we
    rebuild the stem and stages but reuse its blocks, `_make_layer` and forward.
    """

    def __init__(self, width: float = 1.0, small_input: bool = False, num_classes: int = 0):
        nn.Module.__init__(self)
        widths = [max(1, round(c * width)) for c in (64, 128, 256, 512)]
        self._norm_layer = nn.BatchNorm2d
        self.dilation, self.groups, self.base_width = 1, 1, 64
        self.inplanes = widths[0]
        if small_input:  # 3x3 stride-1 stem, no max-pool: keeps detail in 32-96 px images
            self.conv1 = nn.Conv2d(3, widths[0], 3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(BasicBlock, widths[0], 2)
        self.layer2 = self._make_layer(BasicBlock, widths[1], 2, stride=2)
        self.layer3 = self._make_layer(BasicBlock, widths[2], 2, stride=2)
        self.layer4 = self._make_layer(BasicBlock, widths[3], 2, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3], num_classes) if num_classes else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def available_architectures() -> list[str]:
    return sorted(set(tvm.list_models(module=tvm)) | {"resnet18"})


def build_model(arch: str, width: float = 1.0, small_input: bool = False, num_classes: int = 0,
                options: dict | None = None, head: str = "none") -> nn.Module:
    """A freshly initialized network (use the global torch seed for reproducibility).

    `num_classes=0` and `head="none"` give a backbone: the model with its classifier (and the
    classifier's Dropout) replaced by `Representation`, for every torchvision family and for a
    user's model that has one (see HEADS), so it returns its representation. That is what SimCLR
    trains, what checkpoints hold and what probes read. `head="keep"` keeps the classifier, to
    study a supervised network's checkpoints up to its logits.
    """
    options = dict(options or {})
    if is_factory(arch):
        model = _from_factory(arch, options)
    elif arch == "resnet18":
        if options:
            raise UserError(f"arch_options {sorted(options)}: protoscope's resnet18 takes none; it has width and "
                            "small_input (or use another architecture's options).")
        return WideResNet18(width=width, small_input=small_input, num_classes=num_classes)
    elif arch not in tvm.list_models(module=tvm):
        raise UserError(f"Unknown architecture {arch!r}.{did_you_mean(arch, available_architectures())}")
    else:
        model = _torchvision(arch, dict(options, **({"num_classes": num_classes} if num_classes else {})))
    if width != 1.0 or small_input:
        raise UserError(f"width and small_input are only supported for resnet18, not {arch!r}.")
    if num_classes or head == "keep":
        return model
    return without_head(model, arch) if not is_factory(arch) or _has_head(model) else model


def is_factory(arch: str) -> bool:
    """Whether `arch` names the user's own factory (`package.module:function`), not an architecture."""
    return ":" in arch


def _torchvision(arch: str, options: dict) -> nn.Module:
    try:
        return tvm.get_model(arch, weights=None, **options)
    except (TypeError, ValueError, AssertionError) as exc:
        raise UserError(f"arch_options {options} do not build {arch!r}: {exc}") from None


def _from_factory(arch: str, options: dict) -> nn.Module:
    """Call the user's `module:function` with `options`; every failure is one line naming `arch`."""
    module_name, _, attr = arch.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"arch {arch!r}: cannot import {module_name!r} ({exc}); install it or put its folder on "
                        "PYTHONPATH.") from None
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
    if not callable(factory):
        raise UserError(f"arch {arch!r}: {module_name} has no callable {attr!r}.")
    try:
        model = factory(**options)
    except TypeError as exc:
        raise UserError(f"arch {arch!r} with arch_options {options}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"arch {arch!r} returned a {type(model).__name__}, not a torch.nn.Module.")
    return model


def _has_head(model: nn.Module) -> bool:
    return any(isinstance(getattr(model, name, None), nn.Module) for name in HEADS)


class Representation(nn.Module):
    """What stands where a classifier was: the classifier's input, averaged over space where it is
    still a map (SqueezeNet's and MaxViT's heads pool inside), so every backbone returns (batch, D)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) if x.ndim == 4 else x.flatten(1)


def without_head(model: nn.Module, arch: str) -> nn.Module:
    """`model` with its classifier (Dropout and all) replaced by `Representation` (see HEADS)."""
    head = head_name(model, arch)
    setattr(model, head, Representation())
    return model


def head_name(model: nn.Module, arch: str) -> str:
    """The attribute holding the model's classifier."""
    head = next((name for name in HEADS if isinstance(getattr(model, name, None), nn.Module)), None)
    if head is None:
        raise UserError(f"No classifier found in {arch!r} (looked for {', '.join(HEADS)}); protoscope cannot "
                        "make it a backbone.")
    return head


def feature_layer(arch: str, model: nn.Module | None = None) -> str:
    """The default layer whose output is the representation: a ResNet's global pooling, and for every
    other family what stands where its classifier was (`Representation`); a model without either
    (the user's own backbone) is asked to name it."""
    if arch.startswith("resnet"):
        return "avgpool"
    model = model if model is not None else build_model(arch)
    found = next((name for name, module in model.named_modules() if isinstance(module, Representation)), None)
    if found is None:
        if is_factory(arch):
            raise UserError(f"{arch} has no classifier to stand in for ({', '.join(HEADS)}): name its representation "
                            "layer in `probe.layer` (`protoscope layers STUDY` lists the layers).")
        return head_name(model, arch)
    return found


def run_model(run) -> nn.Module:
    """A fresh model for a study's run (random weights: load a checkpoint into it), with its
    architecture options, head and the layouts and forward arguments the study declares."""
    from .layers import declare

    model = build_model(run.arch, run.width, run.small_input, options=run.arch_options, head=run.head)
    return declare(model, run.layouts or None, run.forward_kwargs or None)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["WideResNet18", "Representation", "available_architectures", "build_model", "feature_layer", "count_parameters",
           "is_factory", "run_model"]
