"""Raw training batches, step by step, read in worker processes beside the training step.

A batch is a uint8 tensor (N, 3, S, S): the built-in streams draw it, a data set
is read and resized. Each is a pure function of (seed, epoch, step), so the
views made from it (`train.views`) do not depend on how many workers ran, or
on whether training was interrupted.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..errors import UserError
from .datasets import _to_uint8
from .shapes import _seeded


# A new loader per epoch starts its workers anew. Forked, that is instant; spawned (the default in a
# process that was itself spawned, e.g. by `executors.ProcessExecutor`), each start imports torch again:
# 4 s of every 6.5 s epoch. Where fork does not exist, the platform's default.
_FORK = "fork" if "fork" in multiprocessing.get_all_start_methods() else None


class RawBatches(IterableDataset):
    def __init__(self, source, size: int, epoch: int, start_step: int = 0):
        self.source, self.size = source, size
        self.epoch, self.start_step = epoch, start_step

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        if info:
            torch.set_num_threads(1)  # leave the cores to the training step
        for step in range(self.start_step, self.source.steps_per_epoch):
            if step % workers != worker:
                continue
            try:
                images = self.source.images(self.epoch, step)
                batch = images if isinstance(images, torch.Tensor) else torch.stack(
                    [_to_uint8(image, self.size) for image in images])
            except UserError as exc:
                # sent as data: raised in a worker, torch would re-raise it with the worker's traceback as its message
                yield step, str(exc)
                return
            yield step, batch


def batch_loader(source, size: int, epoch: int, workers: int = 1, start_step: int = 0) -> Iterator:
    """(step, uint8 images) in step order; a bad image is a UserError naming it.

    Images not drawn at `size` are resized to it; the views crop from there.
    """
    loader = DataLoader(
        RawBatches(source, size, epoch, start_step),
        batch_size=None,
        num_workers=workers,
        prefetch_factor=2 if workers else None,
        multiprocessing_context=_FORK if workers else None,
    )
    for step, batch in loader:
        if isinstance(batch, str):
            raise UserError(batch)
        yield step, batch


def view_seed(seed: int, epoch: int, step: int) -> int:
    """The augmentation seed of one step."""
    return int(_seeded(seed, epoch, step, 99).initial_seed())
