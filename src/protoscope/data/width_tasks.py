"""The width study's tasks: the same images labelled twice, an original task to train on and a new
task to read linearly from the frozen features.

- ``digits``: translated digits (`data.digits`); original = where the digit is, new = which digit;
- ``shapes``: the built-in shapes; original = a coarse split of the forms (blunt: circle, square;
  pointed: triangle, star), new = the form itself;
- ``imagefolder``: a local folder of class subfolders (the fine labels) and the study's map from
  coarse names to fine class names; original = coarse, new = fine.

Coarse → fine is the seed's "new task": a net trained only to tell blunt from pointed must keep
more than it was asked for to let a linear read-out tell a circle from a square.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UserError

SHAPES_COARSE = {"blunt": ["circle", "square"], "pointed": ["triangle", "star"]}


@dataclass(frozen=True)
class WidthTask:
    """Float images (N, C, S, S) and both labels, for a train and a test split."""

    x_train: torch.Tensor
    y_train: torch.Tensor  # original task
    new_train: np.ndarray  # new task
    x_test: torch.Tensor
    y_test: torch.Tensor
    new_test: np.ndarray
    classes: int  # of the original task

    @property
    def channels(self) -> int:
        return self.x_train.shape[1]

    @property
    def inputs(self) -> int:
        return int(np.prod(self.x_train.shape[1:]))


def width_task(spec, seed: int) -> WidthTask:
    """The task a `WidthSpec` names, drawn for one seed (the same images for every net of that seed)."""
    if spec.task == "digits":
        return _digits(spec, seed)
    if spec.task == "shapes":
        return _shapes(spec, seed)
    return _image_folder(spec, seed)


def coarse_labels(fine: np.ndarray, categories: tuple[str, ...], coarse: dict[str, list[str]]) -> np.ndarray:
    """Each image's coarse class (the index of its group in `coarse`); every fine class in exactly one group."""
    owner = {}
    for index, (group, members) in enumerate(coarse.items()):
        for name in members:
            if name in owner:
                raise UserError(f"width.coarse: class {name!r} is in two groups")
            owner[name] = index
    unknown = sorted(set(owner) - set(categories))
    missing = [c for c in categories if c not in owner]
    if unknown or missing:
        raise UserError(f"width.coarse must place every class of the data set in one group: "
                        f"unknown {unknown or 'none'}, missing {missing or 'none'}; classes: {', '.join(categories)}")
    if len(coarse) < 2:
        raise UserError("width.coarse needs at least two groups (the original task has one class per group)")
    lookup = np.array([owner[c] for c in categories], np.int64)
    return lookup[np.asarray(fine)]


def _digits(spec, seed: int) -> WidthTask:
    from .digits import translated_digits

    train = translated_digits(spec.train_size, spec.canvas, spec.positions, seed=2 * seed)
    test = translated_digits(spec.test_size, spec.canvas, spec.positions, seed=2 * seed + 1)
    as_t = torch.as_tensor
    return WidthTask(as_t(train.images), as_t(train.shift), train.digit,
                     as_t(test.images), as_t(test.shift), test.digit, spec.positions ** 2)


def _shapes(spec, seed: int) -> WidthTask:
    from . import shapes
    from .datasets import normalize

    def split(n: int, offset: int):
        images, fine = shapes.labelled_set(n, 5000 + 2 * seed + offset, spec.image_size)
        return normalize(images), fine.numpy()

    (x_train, f_train), (x_test, f_test) = split(spec.train_size, 0), split(spec.test_size, 1)
    coarse = spec.coarse or SHAPES_COARSE
    return _from_fine(x_train, f_train, x_test, f_test, shapes.CLASSES, coarse)


def _image_folder(spec, seed: int) -> WidthTask:
    """`root/train` and `root/test` when both exist; otherwise one folder, split by a seeded shuffle."""
    from ..specs import DataSpec
    from .datasets import labelled, normalize

    data = DataSpec(name="imagefolder", root=spec.root, image_size=spec.image_size)
    if (spec.root / "train").is_dir() and (spec.root / "test").is_dir():
        train, test = labelled(data, "train", spec.train_size), labelled(data, "test", spec.test_size)
        parts = (normalize(train.images), train.labels.numpy(), normalize(test.images), test.labels.numpy())
        return _from_fine(*parts, train.categories, spec.coarse)
    every = labelled(data, "train")
    order = np.random.default_rng(seed).permutation(len(every))
    if len(order) < 2 * len(every.categories):
        raise UserError(f"width: {spec.root} has {len(order)} images; too few to split into train and test")
    n_test = min(spec.test_size, len(order) // 2)
    test, train = order[:n_test], order[n_test:n_test + spec.train_size]
    images, fine = normalize(every.images), every.labels.numpy()
    return _from_fine(images[train], fine[train], images[test], fine[test], every.categories, spec.coarse)


def _from_fine(x_train, f_train, x_test, f_test, categories, coarse) -> WidthTask:
    c_train, c_test = (torch.as_tensor(coarse_labels(f, categories, coarse)) for f in (f_train, f_test))
    return WidthTask(x_train, c_train, np.asarray(f_train), x_test, c_test, np.asarray(f_test), len(coarse))
