"""Architectures by name: torchvision's, plus a ResNet-18 with a width multiplier.

The narrow ResNet-18 keeps torchvision's module names (`conv1`, `layer1` …
`layer4`, `avgpool`, `fc`), so a layer address means the same thing for the
demo's CPU-sized net and for the seed's full-size ResNet-18.
"""

from __future__ import annotations

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


def build_model(arch: str, width: float = 1.0, small_input: bool = False, num_classes: int = 0) -> nn.Module:
    """A freshly initialized network (use the global torch seed for reproducibility).

    `num_classes=0` gives a backbone: the model with its classifier (and the classifier's Dropout)
    replaced by `Representation`, for every torchvision family, so it returns its representation.
    That is what SimCLR trains, what checkpoints hold and what probes read.
    """
    if arch == "resnet18":
        return WideResNet18(width=width, small_input=small_input, num_classes=num_classes)
    if arch not in tvm.list_models(module=tvm):
        raise UserError(f"Unknown architecture {arch!r}.{did_you_mean(arch, available_architectures())}")
    if width != 1.0 or small_input:
        raise UserError(f"width and small_input are only supported for resnet18, not {arch!r}.")
    model = tvm.get_model(arch, weights=None, **({"num_classes": num_classes} if num_classes else {}))
    return model if num_classes else without_head(model, arch)


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
    other torchvision family what stands where its classifier was (`Representation`)."""
    if arch.startswith("resnet"):
        return "avgpool"
    return head_name(model if model is not None else build_model(arch), arch)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["WideResNet18", "Representation", "available_architectures", "build_model", "feature_layer", "count_parameters"]
