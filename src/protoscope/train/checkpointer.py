"""Checkpoints from the user's own training loop, written the way protoscope reads a run folder.

Why: `protoscope watch` follows a run folder while training writes into it. A loop that calls
`Checkpointer.save` after each epoch (and once before the first: epoch 0, the initialization)
writes `epoch_NNN.safetensors` atomically, so a watcher never sees half a file, and
`Checkpointer.finish` writes the marker that says the run is over. `ProtoscopeCallback` does the
same from PyTorch Lightning's `Trainer`.

    ckpt = protoscope.Checkpointer("runs/mine", model.backbone)
    ckpt.save(0)
    for epoch in range(1, epochs + 1):
        train_one_epoch(model)
        ckpt.save(epoch)
    ckpt.finish()
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

FINISHED = "training.done"  # in a run folder: its training is over (`finished`)
PLAN = "training.plan"  # in a run folder: the epochs its writer will save (`read_plan`)


def finished(folder: str | Path) -> bool:
    """Has the run writing into `folder` said that its training is over?"""
    return (Path(folder) / FINISHED).exists()


def read_plan(folder: str | Path) -> list[int] | None:
    """The epochs a run folder's writer said it will save, or None where it said nothing."""
    path = Path(folder) / PLAN
    return json.loads(path.read_text())["epochs"] if path.is_file() else None


def _write_json(path: Path, value: dict) -> None:
    from ..atomic import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(value) + "\n")


class Checkpointer:
    """Saves `model`'s weights as `folder/epoch_NNN.safetensors` every `every` epochs (epoch 0 always).

    With `epochs` (how many the loop will train), the folder also says which epochs will come:
    `protoscope watch` needs it to follow a run folder it does not train itself.
    """

    def __init__(self, folder: str | Path, model: nn.Module, every: int = 1, epochs: int | None = None):
        if int(every) < 1:
            raise ValueError(f"every must be a positive number of epochs, got {every!r}")
        if epochs is not None and int(epochs) < 1:
            raise ValueError(f"epochs must be a positive number, got {epochs!r}")
        self.folder, self.model, self.every = Path(folder), model, int(every)
        self.saved: list[int] = []
        if epochs is not None:
            planned = sorted(set(range(0, int(epochs) + 1, self.every)) | {int(epochs)})
            _write_json(self.folder / PLAN, {"epochs": planned})

    def save(self, epoch: int, force: bool = False) -> Path | None:
        """Write the weights after `epoch` epochs (0: before training) when it is due; returns the file."""
        from ..nets.checkpoints import checkpoint_name, save_state

        epoch = int(epoch)
        if epoch < 0:
            raise ValueError(f"epoch must be 0 (the initialization) or more, got {epoch}")
        if not force and epoch % self.every:
            return None
        path = self.folder / checkpoint_name(epoch)
        save_state(path, self.model.state_dict(), metadata={"epoch": str(epoch), "writer": "protoscope.Checkpointer"})
        self.saved.append(epoch)
        return path

    def finish(self, epoch: int | None = None) -> None:
        """Say that training is over (after saving `epoch` when given and not yet saved)."""
        if epoch is not None and int(epoch) not in self.saved:
            self.save(epoch, force=True)
        _write_json(self.folder / FINISHED, {"epochs": max(self.saved, default=0)})


def lightning_callback(folder: str | Path, attribute: str | None = None, every: int = 1):
    """A PyTorch Lightning `Callback` that checkpoints `pl_module.<attribute>` (the whole module
    when None) through a `Checkpointer`: epoch 0 when fitting starts, epoch k + 1 when epoch
    index k ends, and the finished marker when fitting ends. Only global rank 0 writes."""
    import pytorch_lightning as pl

    class ProtoscopeCallback(pl.Callback):
        def __init__(self):
            self.checkpointer: Checkpointer | None = None

        def _writer(self, trainer, pl_module) -> Checkpointer | None:
            if trainer.global_rank != 0:
                return None
            if self.checkpointer is None:
                model = pl_module if attribute is None else getattr(pl_module, attribute)
                planned = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None  # -1: unbounded
                self.checkpointer = Checkpointer(folder, model, every, epochs=planned)
            return self.checkpointer

        def on_fit_start(self, trainer, pl_module):
            writer = self._writer(trainer, pl_module)
            if writer is not None and trainer.current_epoch == 0:
                writer.save(0)

        def on_train_epoch_end(self, trainer, pl_module):
            writer = self._writer(trainer, pl_module)
            if writer is not None:
                writer.save(trainer.current_epoch + 1)

        def on_fit_end(self, trainer, pl_module):
            writer = self._writer(trainer, pl_module)
            if writer is not None:
                writer.finish(trainer.current_epoch)

    return ProtoscopeCallback()
