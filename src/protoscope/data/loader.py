"""Two augmented views per image, batch by batch, in worker processes.

Each batch reseeds the augmentation RNG from (seed, epoch, step): the views do
not depend on how many workers ran, or on whether training was interrupted.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import warnings

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torchvision.transforms.functional import to_pil_image

from ..errors import UserError
from .shapes import _seeded


class ViewBatches(IterableDataset):
    def __init__(self, source, transform, seed: int, epoch: int, start_step: int = 0):
        self.source, self.transform = source, transform
        self.seed, self.epoch, self.start_step = seed, epoch, start_step

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        if info:
            torch.set_num_threads(1)  # leave the cores to the training step
        for step in range(self.start_step, self.source.steps_per_epoch):
            if step % workers != worker:
                continue
            rng_seed = int(_seeded(self.seed, self.epoch, step, 99).initial_seed())
            torch.manual_seed(rng_seed)
            random.seed(rng_seed)
            try:
                with warnings.catch_warnings():  # lightly calls torchvision's deprecated to_tensor
                    warnings.simplefilter("ignore", UserWarning)
                    views = [self.transform(_as_pil(image)) for image in self.source.images(self.epoch, step)]
            except UserError as exc:
                # sent as data: raised in a worker, torch would re-raise it with the worker's traceback as its message
                yield step, str(exc), None
                return
            yield step, torch.stack([v[0] for v in views]), torch.stack([v[1] for v in views])


def view_loader(source, transform, seed: int, epoch: int, workers: int = 1, start_step: int = 0) -> Iterator:
    """Batches of (step, view0, view1) in step order; a bad image is a UserError naming it."""
    loader = DataLoader(
        ViewBatches(source, transform, seed, epoch, start_step),
        batch_size=None,
        num_workers=workers,
        prefetch_factor=2 if workers else None,
    )
    for step, view0, view1 in loader:
        if isinstance(view0, str):
            raise UserError(view0)
        yield step, view0, view1


def _as_pil(image):
    """torchvision's colour jitter is several times faster on PIL images than on small tensors."""
    return to_pil_image(image) if isinstance(image, torch.Tensor) else image
