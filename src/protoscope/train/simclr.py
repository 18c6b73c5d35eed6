"""SimCLR training (lightly) with the seed's two augmentation conditions.

`clrjit` is lightly's SimCLR augmentation (batched on the device: `views.py`); `keepclr` disables colour jitter and
random grayscale (`cj_prob=0, random_gray_scale=0`), leaving colour as a
shortcut for matching views. A run folder gets `run.yaml`, the initialization
as epoch 0, one backbone checkpoint per epoch and `train_state.safetensors`
(model, head, optimizer) for resuming. Everything that changes the weights —
model, optimizer, learning rate at each step, data, augmentation RNG — is a
function of (seed, epoch, step), so a resumed run ends with the same weights as
an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

import torch
import yaml
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from safetensors import safe_open
from torch import nn

from ..atomic import write_text
from ..data.datasets import TrainImages
from ..data.loader import batch_loader, view_seed
from ..errors import UserError
from ..nets.checkpoints import checkpoint_name, load_state, save_state
from ..nets.models import run_model
from ..nets.onednn import route_around_onednn_bug
from ..runtime import autocast
from .views import make_views, view_augmentation

STATE_FILE = "train_state.safetensors"
RUN_FILE = "run.yaml"


class SimCLR(nn.Module):
    """Backbone (what we study) + projection head (what the loss sees)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, hidden_dim: int, projection_dim: int):
        super().__init__()
        self.backbone = backbone
        self.head = SimCLRProjectionHead(feature_dim, hidden_dim, projection_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x).flatten(1))


def feature_dim(backbone: nn.Module, image_size: int) -> int:
    was = backbone.training
    backbone.eval()
    with torch.no_grad():
        dim = backbone(torch.zeros(1, 3, image_size, image_size)).flatten(1).shape[1]
    backbone.train(was)
    return dim


def build_simclr(run) -> SimCLR:
    """The run's model at initialization (seeded by the run's seed)."""
    torch.manual_seed(run.seed)
    backbone = run_model(run)
    dim = feature_dim(backbone, run.data.image_size)
    return SimCLR(backbone, dim, run.simclr.hidden_dim or dim, run.simclr.projection_dim)


def lr_at(run, step: int, total: int) -> float:
    """Linear warm-up, then cosine annealing to zero (per step, so resuming is exact)."""
    opt = run.optimizer
    if step < opt.warmup_steps:
        return opt.lr * (step + 1) / opt.warmup_steps
    progress = (step - opt.warmup_steps) / max(1, total - opt.warmup_steps)
    return opt.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for index, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                out[f"optimizer.{index}.{name}"] = value
    return out


def _load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    full = optimizer.state_dict()
    full["state"] = state
    optimizer.load_state_dict(full)


def check_run_file(folder: Path, run) -> bool:
    """Refuse a run folder that was trained with other settings; False if it has no run file yet."""
    path = Path(folder) / RUN_FILE
    if not path.is_file():
        return False
    wanted = run.training_fields()
    try:
        found = (yaml.safe_load(path.read_text()) or {}).get("training", {})
    except yaml.YAMLError as exc:
        raise UserError(f"{path} is not valid YAML: {exc}") from None
    if found != wanted:
        diffs = [k for k in sorted(set(found) | set(wanted)) if found.get(k) != wanted.get(k)]
        raise UserError(
            f"{folder} holds a run trained with different settings ({', '.join(diffs)}). "
            "Use another store or run name, or delete that folder to retrain."
        )
    return True


def _write_run_file(folder: Path, run) -> None:
    if not check_run_file(folder, run):
        doc = {"name": run.name, "arch": run.arch, "width": run.width, "small_input": run.small_input,
               "condition": run.condition, "seed": run.seed, "epochs": run.epochs, "training": run.training_fields()}
        write_text(folder / RUN_FILE, yaml.safe_dump(doc, sort_keys=False))


def trained_epochs(folder: Path) -> int:
    """The last epoch whose training state is stored (-1 when none)."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        return -1
    try:
        with safe_open(str(path), "pt") as f:
            return int(json.loads(f.metadata()["meta"])["epoch"])
    except Exception as exc:  # a torn file cannot happen (atomic), but a foreign one can
        raise UserError(f"Cannot read training state {path}: {exc}. Delete it to restart that run.") from None


def train_run(
    run,
    folder: Path,
    device: torch.device,
    bf16: bool = False,
    workers: int = 1,
    on_step: Callable[[int, int, float], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Train `run` into `folder`, resuming after the last finished epoch.

    Returns one record per newly trained epoch ({epoch, loss, seconds}).
    `on_step(epoch, step, loss)` is called after every step (progress bars; a
    test raises from it to simulate a kill). `on_epoch(record)` runs after the
    epoch's checkpoint is written and before the epoch is marked done.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write_run_file(folder, run)
    done = trained_epochs(folder)
    if done >= run.epochs:
        return []

    source = TrainImages(run.data, run.optimizer.batch_size)
    model, optimizer = _model_and_optimizer(run, folder, device, done)
    criterion = NTXentLoss(temperature=run.simclr.temperature)
    augment = view_augmentation(run).to(device)
    records = []
    for epoch in range(max(done, 0) + 1, run.epochs + 1):
        start = time.perf_counter()
        losses = _train_epoch(run, epoch, source, model, optimizer, criterion, augment, device, bf16, workers, on_step)
        record = {"epoch": epoch, "loss": sum(losses) / len(losses), "seconds": time.perf_counter() - start}
        # The checkpoint first, then the state that marks the epoch done.
        save_state(folder / checkpoint_name(epoch), model.backbone.state_dict(), {"epoch": str(epoch)})
        if on_epoch:
            on_epoch(record)
        state = {f"model.{k}": v for k, v in model.state_dict().items()} | _optimizer_tensors(optimizer)
        save_state(folder / STATE_FILE, state, {"meta": json.dumps(record)})
        records.append(record)
    return records


def _model_and_optimizer(run, folder: Path, device: torch.device, done: int):
    """The SimCLR model and its optimizer on `device`, as they stood after epoch `done` (the initialization,
    saved as epoch 0, when nothing was trained yet)."""
    model = build_simclr(run)
    if done < 0:
        save_state(folder / checkpoint_name(0), model.backbone.state_dict(), {"epoch": "0"})
    route_around_onednn_bug(model, device)  # narrow nets crash oneDNN's AVX2 kernels otherwise
    # channels-last (NHWC): oneDNN's and cuDNN's fastest layout for bf16 convolutions
    model = model.to(device, memory_format=torch.channels_last)
    spec = run.optimizer
    optimizer = (torch.optim.AdamW(model.parameters(), lr=spec.lr, betas=(spec.momentum, 0.999),
                                   weight_decay=spec.weight_decay) if spec.name == "adamw" else
                 torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay))
    if done >= 1:
        tensors = load_state(folder / STATE_FILE)
        model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
        _load_optimizer(optimizer, {k: v.to(device) for k, v in tensors.items()})
    return model, optimizer


def _train_epoch(run, epoch, source, model, optimizer, criterion, augment, device, bf16, workers, on_step) -> list[float]:
    """One epoch of SimCLR steps (the cosine schedule set per step); returns each step's loss."""
    steps = source.steps_per_epoch
    total = steps * run.epochs
    model.train()
    losses = []
    for step, images in batch_loader(source, run.data.image_size, epoch, workers):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(run, (epoch - 1) * steps + step, total)
        views = make_views(augment, images.to(device, non_blocking=True), view_seed(run.seed, epoch, step))
        x = torch.cat(views).contiguous(memory_format=torch.channels_last)
        with autocast(device, bf16):
            z = model(x)
        z0, z1 = z.float().chunk(2)
        loss = criterion(z0, z1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if on_step:
            on_step(epoch, step, losses[-1])
    return losses
