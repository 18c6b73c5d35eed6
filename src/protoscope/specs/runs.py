"""The study file's runs: what is trained (or read) — the model, its data, optimizer and SimCLR views.

`Strict` is every section's base: unknown keys are errors that name the field, and sections are frozen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import did_you_mean

Condition = Literal["clrjit", "keepclr"]
Classifier = Literal["logreg", "svm", "adam"]

# lightly's SimCLRTransform arguments a study may set in `simclr.augment` (all but input_size and normalize),
# listed so validating a study does not import lightly and torch; tests/test_study_loading.py compares them
# with the installed lightly, and train/views.py implements each
SIMCLR_AUGMENT_ARGS = (
    "cj_prob", "cj_strength", "cj_bright", "cj_contrast", "cj_sat", "cj_hue", "min_scale", "random_gray_scale",
    "gaussian_blur", "sigmas", "vf_prob", "hf_prob", "rr_prob", "rr_degrees",
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(Strict):
    """Where images come from. `shapes` and `digits` (scikit-learn's handwritten digits, in colour) are
    built in; the others read a local root."""

    name: Literal["shapes", "digits", "stl10", "cifar10", "imagefolder"] = Field("shapes",
        description="shapes and digits are built in; stl10, cifar10 and imagefolder read local files")
    root: Path | None = Field(None,
        description="the data set's folder: stl10 root/stl10_binary, cifar10 root/cifar-10-batches-py, imagefolder "
                    "root/<class>/ or root/train and root/test")
    image_size: int = Field(96, ge=8, description="images are resized to this many pixels a side")
    epoch_size: int = Field(4096, ge=1, description="shapes and digits: images per epoch of the built-in stream")
    seed: int = Field(0, description="seed of the built-in streams and of the fixed labelled sets")

    @model_validator(mode="after")
    def _root_needed(self):
        if self.name not in ("shapes", "digits") and self.root is None:
            raise ValueError(f"data set {self.name!r} reads local files: set `root` to its folder")
        return self


class OptimizerSpec(Strict):
    """SGD with momentum (or AdamW, which ViTs need, with `momentum` as its first beta), linear
    warm-up, then cosine annealing to zero."""

    name: Literal["sgd", "adamw"] = Field("sgd",
        description="sgd (with momentum) or adamw (momentum is its first beta)")
    lr: float = Field(0.06, gt=0, description="peak learning rate, after the warm-up")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD's momentum, or AdamW's first beta")
    weight_decay: float = Field(5e-4, ge=0, description="weight decay")
    warmup_steps: int = Field(0, ge=0, description="steps of linear warm-up before the cosine schedule")
    batch_size: int = Field(1024, ge=2, description="images per step (each gives two views)")


class SimCLRSpec(Strict):
    temperature: float = Field(0.5, gt=0, description="NT-Xent temperature")
    hidden_dim: int | None = Field(None, description="projection head hidden width; default: the feature width")
    projection_dim: int = Field(128, ge=1, description="the projection head's output width")
    augment: dict[str, Any] = Field(default_factory=dict, description="extra lightly SimCLRTransform arguments")

    @field_validator("augment")
    @classmethod
    def _known_augment_args(cls, value: dict[str, Any]) -> dict[str, Any]:
        valid = set(SIMCLR_AUGMENT_ARGS)
        reserved = {"cj_prob", "random_gray_scale"}  # set by the condition
        for key in value:
            if key in reserved:
                raise ValueError(f"{key!r} is set by the run's condition (clrjit/keepclr), not by augment")
            if key not in valid:
                raise ValueError(f"unknown augmentation {key!r}; valid: {', '.join(sorted(valid - reserved))}")
        return value


class RunSpec(Strict):
    """One training sequence. With `path`, an existing run folder: nothing is trained.

    The model is `arch` (a torchvision name, protoscope's resnet18, or the user's factory as
    `package.module:function`) built with `arch_options`; `head`, `layouts` and `forward_kwargs`
    say how protoscope reads it, `checkpoints` how the run's files are named.
    """

    name: str = Field("{condition}-s{seed}",
        description="a template of condition, seed, arch and width; also the run's folder name")
    condition: Condition = Field("clrjit",
        description="clrjit: SimCLR with lightly's colour jitter; keepclr: without it (nor random greyscale)")
    seed: int = Field(0, description="seed of the initialization, the data order and the views")
    arch: str = Field("resnet18",
        description="a torchvision name, protoscope's resnet18, or your factory as package.module:function")
    arch_options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the constructor")
    head: Literal["none", "keep"] = Field("none", description="none: the classifier is removed (a backbone); keep: "
                                                               "studied up to its logits (checkpoints only)")
    layouts: dict[str, Literal["NCHW", "NHWC", "NTD", "ND"]] = Field(
        default_factory=dict, description="a layer's raw layout, where protoscope cannot find it")
    forward_kwargs: dict[str, Any] = Field(default_factory=dict, description="extra arguments of the model's forward")
    width: float = Field(1.0, gt=0, description="resnet18: channel multiplier (1.0 is torchvision's ResNet-18)")
    small_input: bool = Field(False, description="resnet18: a 3x3 stride-1 stem without max-pool, for small images")
    data: DataSpec = Field(DataSpec(), description="the images SimCLR trains on (and the probes' default)")
    epochs: int = Field(100, ge=0,
        description="training epochs; a checkpoint of the initialization (epoch 0) and one per epoch")
    optimizer: OptimizerSpec = Field(OptimizerSpec(), description="SGD or AdamW, warm-up, then cosine annealing")
    simclr: SimCLRSpec = Field(SimCLRSpec(),
        description="NT-Xent temperature, projection head and the views' augmentation")
    path: Path | None = Field(None, description="a folder of checkpoints you bring: nothing is trained")
    checkpoints: str | None = Field(None, description="file-name pattern, e.g. 'epoch={epoch_index}-step={step}.ckpt'")

    @field_validator("name")
    @classmethod
    def _path_component(cls, value: str) -> str:
        # the name becomes a folder (STORE/runs/<name>), a metrics key and a Zarr group; '~' joins align pairs
        bad = [c for c in ("/", "\\", "~") if c in value]
        if not value.strip() or value in (".", "..") or value.startswith("__") or bad or not value.isprintable():
            raise ValueError(f"run name {value!r} must be usable as a folder name: not empty, '.' or '..', without "
                             "'/', '\\' or '~', not starting with '__'")
        return value

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        if value == "resnet18":  # ours, and the common case: no torchvision import to confirm it
            return value
        if ":" in value:  # the user's factory: imported when the model is built, not to read the study
            module, _, attr = value.partition(":")
            if not all(part.isidentifier() for part in module.split(".") + attr.split(".")):
                raise ValueError(f"arch {value!r}: a factory is named package.module:function")
            return value
        from torchvision import models as tvm

        valid = sorted(set(tvm.list_models(module=tvm)) | {"resnet18"})  # as nets.models.available_architectures
        if value not in valid:
            raise ValueError(f"unknown architecture {value!r}.{did_you_mean(value, valid)} Or name your own "
                             "model's factory as package.module:function")
        return value

    @field_validator("checkpoints")
    @classmethod
    def _checkpoint_pattern(cls, value: str | None) -> str | None:
        if value is not None:
            from ..nets.checkpoint_files import check_checkpoint_pattern

            check_checkpoint_pattern(value)
        return value

    @model_validator(mode="after")
    def _model_options(self):
        if self.arch != "resnet18" and (self.width != 1.0 or self.small_input):
            raise ValueError(f"width and small_input are only supported for resnet18, not {self.arch!r}")
        return self

    def training_fields(self) -> dict[str, Any]:
        """What determines the trained weights (compared when resuming); the model options only
        when set, so runs trained before they existed still resume."""
        fields = self.model_dump(mode="json", exclude={"name", "path", "epochs", "checkpoints", "layouts", "head"})
        for key in ("arch_options", "forward_kwargs"):
            if not fields[key]:
                del fields[key]
        if fields["optimizer"]["name"] == "sgd":
            del fields["optimizer"]["name"]
        return fields
