"""Image sources: the built-in shapes and digits, and STL10 / CIFAR-10 / ImageFolder from a local root.

Nothing is downloaded: a missing data set is an error that says where its files
must be. Training reads batches of raw images (uint8 tensors or PIL images);
probes and RSA read labelled uint8 tensors (N, 3, S, S) at the study's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.functional import pil_to_tensor

from ..errors import UserError
from . import handwritten, shapes

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Which split of each data set plays which role.
_TRAIN_SPLIT = {"stl10": "unlabeled", "cifar10": "train", "imagefolder": "train"}
_LABELLED_SPLIT = {"train": {"stl10": "train", "cifar10": "train", "imagefolder": "train"},
                   "test": {"stl10": "test", "cifar10": "test", "imagefolder": "test"}}
# Fixed seeds for the built-in labelled sets, so every run is probed on the same images.
_SHAPES_SEEDS = {"train": 1001, "test": 1002, "probe": 1003}


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W), or float in [0, 1] -> ImageNet-normalized float: what every network sees."""
    x = images.float().div(255) if images.dtype == torch.uint8 else images
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def open_torchvision(name: str, root: Path, split: str):
    """A torchvision data set read from `root`, never downloaded."""
    from torchvision import datasets as tvd

    root = Path(root)
    try:
        if name == "stl10":
            return tvd.STL10(str(root), split=split, download=False)
        if name == "cifar10":
            return tvd.CIFAR10(str(root), train=(split == "train"), download=False)
        if name == "imagefolder":
            folder = root / split if (root / split).is_dir() else root
            return tvd.ImageFolder(str(folder), loader=load_rgb)
    except (RuntimeError, FileNotFoundError, OSError) as exc:
        expected = {
            "stl10": f"{root}/stl10_binary/ (the extracted stl10_binary.tar.gz)",
            "cifar10": f"{root}/cifar-10-batches-py/ (the extracted cifar-10-python.tar.gz)",
            "imagefolder": f"{root}/<split>/<class>/<image> or {root}/<class>/<image>",
        }[name]
        raise UserError(f"Cannot read data set {name!r} from {root}: {str(exc).rstrip('.')}. Expected {expected}.") from None
    raise UserError(f"Unknown data set {name!r}; valid: shapes, digits, stl10, cifar10, imagefolder")


def load_rgb(path) -> "Image.Image":
    """An image file as 8-bit RGB, whatever its mode: greyscale, palette and CMYK are converted, alpha is
    dropped, and 16-bit images are scaled to 8 bits (PIL's own conversion would clip them to white).
    Sizes are left alone (every reader resizes). An unreadable file is a UserError naming it."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):  # 16-bit grey (PIL reads some as 32-bit "I")
                values = np.clip(np.asarray(image, dtype=np.float64), 0, 65535)
                return Image.fromarray((values / 257).round().astype(np.uint8), mode="L").convert("RGB")
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UserError(f"Cannot read image {path}: {exc}") from None


def _to_uint8(image, size: int) -> torch.Tensor:
    t = image if isinstance(image, torch.Tensor) else pil_to_tensor(image.convert("RGB"))
    if t.shape[-1] != size or t.shape[-2] != size:
        t = F.interpolate(t[None].float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
        t = t.round().clamp(0, 255).to(torch.uint8)
    return t


class TrainImages:
    """Raw training images by (epoch, step): a pure function, so training can resume exactly."""

    def __init__(self, spec, batch_size: int):
        self.spec, self.batch_size = spec, batch_size
        if spec.name in ("shapes", "digits"):
            kind = shapes.ShapeStream if spec.name == "shapes" else handwritten.DigitStream
            self._stream = kind(spec.image_size, spec.seed, spec.epoch_size, batch_size)
            self.steps_per_epoch = self._stream.steps_per_epoch
        else:
            self._dataset = open_torchvision(spec.name, spec.root, _TRAIN_SPLIT[spec.name])
            self.steps_per_epoch = max(1, len(self._dataset) // batch_size)

    def images(self, epoch: int, step: int) -> torch.Tensor | list:
        """The built-in streams' uint8 batch, or a data set's images as read."""
        if self.spec.name in ("shapes", "digits"):
            return self._stream.batch(epoch, step)
        gen = torch.Generator().manual_seed(self.spec.seed * 100_003 + epoch)
        order = torch.randperm(len(self._dataset), generator=gen)
        index = order[step * self.batch_size : (step + 1) * self.batch_size]
        return [self._dataset[int(i)][0] for i in index]


@dataclass(frozen=True)
class Labelled:
    """Images with category labels (probe training/testing, RSA stimulus sets)."""

    images: torch.Tensor  # uint8 (N, 3, S, S)
    labels: torch.Tensor  # int64 (N,)
    categories: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


def labelled(spec, split: str, n: int | None = None) -> Labelled:
    """A labelled split ("train", "test" or "probe") at the spec's image size.

    For shapes, `n` images are generated; for the others, `n` caps the number
    read (a class-balanced, seeded subsample), None reading all.
    """
    if spec.name == "shapes":
        count = n or 1000
        images, labels = shapes.labelled_set(count, _SHAPES_SEEDS[split] + spec.seed, spec.image_size)
        return Labelled(images, labels, shapes.CLASSES)
    if spec.name == "digits":
        images, labels = handwritten.labelled_set(split, n, _SHAPES_SEEDS[split] + spec.seed, spec.image_size)
        return Labelled(images, labels, handwritten.CLASSES)
    dataset = open_torchvision(spec.name, spec.root, _LABELLED_SPLIT["test" if split == "test" else "train"][spec.name])
    targets = getattr(dataset, "targets", None)
    targets = np.asarray(getattr(dataset, "labels", None) if targets is None else targets)
    index = np.arange(len(targets))
    if n is not None and n < len(index):
        rng = np.random.default_rng(spec.seed + (7 if split == "probe" else 0))
        per_class = {c: rng.permutation(np.flatnonzero(targets == c)) for c in np.unique(targets)}
        take = max(1, n // len(per_class))
        index = np.sort(np.concatenate([idx[:take] for idx in per_class.values()]))
    images = torch.stack([_to_uint8(dataset[int(i)][0], spec.image_size) for i in index])
    categories = tuple(getattr(dataset, "classes", None) or [str(c) for c in sorted(np.unique(targets))])
    return Labelled(images, torch.as_tensor(targets[index], dtype=torch.int64), categories)
