"""SimCLR's two augmented views, made for the whole batch at once on the training device.

The augmentation is lightly's SimCLRTransform — the same steps, the same
parameters and defaults (read from its signature) — run by kornia, which draws
every image's random parameters but transforms the batch as tensors. lightly's
transform works one PIL image at a time: on the demo's 2 cores it took 136 ms
for a batch's two views, kornia 27 ms (`bench/train_step.py`), and on a GPU the
views never leave it. One difference remains: kornia draws the colour-jitter
order once per batch, torchvision once per image.

`keepclr` turns colour jitter and random grayscale off, as it does for lightly.
"""

from __future__ import annotations

import inspect
import math

import kornia.augmentation as K
import torch
from lightly.transforms import SimCLRTransform
from torch import nn

from ..data.datasets import IMAGENET_MEAN, IMAGENET_STD


def augment_settings(run) -> dict:
    """lightly's SimCLRTransform arguments for the run: its defaults, the study's `augment`, the condition."""
    params = inspect.signature(SimCLRTransform.__init__).parameters
    settings = {k: p.default for k, p in params.items() if k not in ("self", "input_size", "normalize")}
    settings.update(run.simclr.augment)
    if run.condition == "keepclr":
        settings.update(cj_prob=0.0, random_gray_scale=0.0)
    return settings


def _blur(sigmas, prob: float, size: int) -> K.RandomGaussianBlur:
    # PIL's GaussianBlur(radius=sigma), which lightly calls, reaches about 3 sigma; an odd kernel that fits
    reach = min(math.ceil(3 * max(sigmas)), (size - 1) // 2)
    return K.RandomGaussianBlur(2 * reach + 1, tuple(float(s) for s in sigmas), p=prob)


def view_augmentation(run) -> nn.Module:
    """The run's view transform: float images in [0, 1] (N, 3, S', S') -> normalized views (N, 3, S, S)."""
    s = augment_settings(run)
    size = run.data.image_size
    strength = s["cj_strength"]
    steps: list[nn.Module] = [
        K.RandomResizedCrop((size, size), scale=(s["min_scale"], 1.0)),
        K.RandomHorizontalFlip(p=s["hf_prob"]),
        K.RandomVerticalFlip(p=s["vf_prob"]),
    ]
    if s["rr_prob"] > 0:  # lightly: no degrees = a quarter turn (counter-clockwise), else uniform in ±degrees
        steps.append(K.RandomRotation90(times=(1, 1), p=s["rr_prob"]) if s["rr_degrees"] is None
                     else K.RandomRotation(s["rr_degrees"], p=s["rr_prob"]))
    if s["cj_prob"] > 0:
        steps.append(K.ColorJitter(strength * s["cj_bright"], strength * s["cj_contrast"], strength * s["cj_sat"],
                                   strength * s["cj_hue"], p=s["cj_prob"]))
    if s["random_gray_scale"] > 0:
        steps.append(K.RandomGrayscale(p=s["random_gray_scale"]))
    if s["gaussian_blur"] > 0:
        steps.append(_blur(s["sigmas"], s["gaussian_blur"], size))
    steps.append(K.Normalize(torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)))
    return nn.Sequential(*steps)


def make_views(augment: nn.Module, images: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two views of a uint8 batch, a function of `seed` alone (resuming repeats them exactly).

    The global RNG is seeded inside a fork, so nothing else's randomness moves.
    """
    x = images.float().div_(255)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        return augment(x), augment(x)
