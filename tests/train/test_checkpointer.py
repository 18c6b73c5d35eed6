"""Checkpoints from a user's own loop (`protoscope.Checkpointer`) and from Lightning
(`protoscope.lightning_callback`): the files protoscope reads, every one complete, and the marker
that says training is over."""

import pytest
import torch
from torch import nn

import protoscope
from protoscope.nets.checkpoint_files import epoch_files
from protoscope.nets.checkpoints import load_into
from protoscope.nets.complete import is_complete
from protoscope.train.checkpointer import finished

pytestmark = pytest.mark.timeout(120)


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


def test_a_plain_loop_writes_the_epochs_protoscope_reads(tmp_path):
    model = _net()
    ckpt = protoscope.Checkpointer(tmp_path / "run", model, every=2)
    weights = {}
    for epoch in range(0, 6):
        with torch.no_grad():
            model[0].weight.add_(1.0)  # "training"
        weights[epoch] = model[0].weight.clone()
        ckpt.save(epoch)
        assert not finished(tmp_path / "run")
    ckpt.finish(epoch=5)  # the last epoch is saved even when `every` skips it
    files = epoch_files(tmp_path / "run")
    assert list(files) == [0, 2, 4, 5]
    assert all(is_complete(path) for path in files.values())
    assert finished(tmp_path / "run")
    fresh = load_into(_net(), files[4])
    assert torch.equal(fresh[0].weight, weights[4])


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="every"):
        protoscope.Checkpointer("x", _net(), every=0)
    with pytest.raises(ValueError, match="epoch"):
        protoscope.Checkpointer("x", _net()).save(-1)


def test_the_lightning_callback_saves_epoch_zero_each_epoch_and_the_end(tmp_path):
    pl = pytest.importorskip("pytorch_lightning")

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.backbone, self.head = _net()[:4], nn.Linear(4, 2)

        def training_step(self, batch, _):
            x, y = batch
            return nn.functional.cross_entropy(self.head(self.backbone(x)), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.TensorDataset(torch.rand(8, 3, 8, 8), torch.randint(0, 2, (8,)))
    module = Module()
    trainer = pl.Trainer(max_epochs=3, callbacks=[protoscope.lightning_callback(tmp_path / "run", "backbone")],
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=4))
    files = epoch_files(tmp_path / "run")
    assert list(files) == [0, 1, 2, 3] and finished(tmp_path / "run")
    last = load_into(_net()[:4], files[3])
    assert torch.equal(last[0].weight, module.backbone[0].weight)
    first = load_into(_net()[:4], files[0])
    assert not torch.equal(first[0].weight, last[0].weight)  # epoch 0 is the weights before training
