"""Spaces to compare prototypes in: pixels, a pretrained torchvision CNN, or a checkpoint of the study.

A prototype is a picture; how far apart two pictures are depends on who looks.
Pixel space compares the (masked) images themselves; an embedding space compares
what a trained network makes of them — the pooled penultimate features of one of
the seed's ten ImageNet CNNs, or of any checkpoint of the study (the demo's choice,
since no pretrained weights ship here). Weights are only ever read from local
files: nothing is downloaded.

A model's embedding of a prototype is computed once and stored in
``STORE/embeddings.zarr`` (`store.embeddings.EmbeddingStore`), one chunk per (epoch, repeat) block,
marked done after it is written — so an interrupted `analyze` resumes.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data.datasets import normalize
from ..errors import UserError, did_you_mean

# The seed's ten embedding networks and the layer whose output is their pooled, penultimate
# representation. VGG's `avgpool` is a 7x7 map (25,088 values), so its penultimate layer is fc7
# after its ReLU (`classifier.4`, 4096 values); the others pool to one vector per image.
PENULTIMATE = {
    "resnet50": "avgpool", "resnet101": "avgpool", "resnet152": "avgpool",
    "inception_v3": "avgpool",
    "vgg16": "classifier.4", "vgg19": "classifier.4",
    "densenet121": "adaptive_avg_pool2d", "densenet169": "adaptive_avg_pool2d",
    "densenet201": "adaptive_avg_pool2d",
    "mobilenet_v2": "adaptive_avg_pool2d",
}
# Constructor arguments that make the architecture match its published weights (torchvision sets the
# same ones when it loads them itself), and skip a random initialization the weights overwrite anyway.
_BUILD_ARGS = {
    "inception_v3": {"aux_logits": True, "transform_input": True, "init_weights": False},
    "vgg16": {"init_weights": False}, "vgg19": {"init_weights": False},
}
# DenseNet's published files predate a rename ('denselayer1.norm.1.weight' -> 'denselayer1.norm1.weight');
# torchvision rewrites the keys when it loads them, and so must we.
_DENSENET_OLD_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


class PixelSpace:
    """The image itself, as a vector: nothing to compute, nothing stored."""

    name = "pixel"
    stored = False

    def settings(self) -> dict:
        return {"kind": "pixel"}

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)


class ModelSpace:
    """A network's features of a layer, flattened; the network is built on first use.

    `build()` returns (model, layer, image_size). Images (N, 3, S, S) in [0, 1] are resized to
    `image_size` when it differs, ImageNet-normalized, and pushed through the model truncated at
    `layer`, in float32.
    """

    stored = True

    def __init__(self, name: str, settings: dict, build, device: torch.device | str = "cpu"):
        self.name, self._settings, self._build, self.device = name, settings, build, torch.device(device)
        self._net = None

    def __repr__(self) -> str:
        return f"ModelSpace({self.name!r})"

    def settings(self) -> dict:
        return dict(self._settings)

    def _ready(self):
        if self._net is None:
            from ..nets.layers import check_layers, truncate

            model, layer, size = self._build()
            # channels-last: the layout oneDNN and cuDNN convolve fastest (about 1.4x here on CPU)
            model = model.to(self.device, memory_format=torch.channels_last).eval().requires_grad_(False)
            self._layer = check_layers(model, layer)[0]
            self._net, self._size = truncate(model, self._layer), size
        return self._net

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        net = self._ready()
        x = images.to(self.device, torch.float32)
        if x.shape[-1] != self._size or x.shape[-2] != self._size:
            x = F.interpolate(x, size=(self._size, self._size), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self._size)
        x = normalize(x).contiguous(memory_format=torch.channels_last)
        return net(x)[self._layer].flatten(1).float()


# ---------------------------------------------------------------- pretrained torchvision models


def _weight_sets(model: str):
    from torchvision import models as tvm

    try:
        return tvm.get_model_weights(model)
    except (ValueError, KeyError):
        return None


def weights_file(model: str, weights: str = "IMAGENET1K_V1") -> Path:
    """The local file holding `model`'s weights: `weights` itself when it is a path, else the torch
    hub cache's copy of that weight set (``torch.hub.get_dir()/checkpoints/<file name of its URL>``,
    where torchvision would have put it). A missing file is a UserError saying where to put it."""
    path = Path(weights).expanduser()
    if "/" in weights or path.suffix in (".pt", ".pth", ".safetensors"):
        if not path.is_file():
            raise UserError(f"Weights file for {model} not found: {path} (analyze.spaces[].weights).")
        return path
    sets = _weight_sets(model)
    names = [w.name for w in sets] if sets is not None else []
    if weights not in names:
        raise UserError(f"{model} has no weight set {weights!r}; give a local file in analyze.spaces[].weights"
                        + (f", or one of its weight sets.{did_you_mean(weights, names)}" if names else "."))
    url = sets[weights].url
    path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if not path.is_file():
        raise UserError(
            f"No local weights for {model} ({weights}): put the file at {path} "
            f"(torchvision publishes it at {url}; protoscope never downloads), "
            "or set analyze.spaces[].weights to a local .pth/.safetensors file."
        )
    return path


def load_pretrained(model: str, weights: str = "IMAGENET1K_V1") -> nn.Module:
    """A torchvision model with its weights read from a local file (safetensors or a weights-only .pth)."""
    from torchvision import models as tvm

    from ..nets.checkpoints import fit_state, load_state

    names = tvm.list_models(module=tvm)
    if model not in names:
        raise UserError(f"Unknown torchvision model {model!r}.{did_you_mean(model, names)}")
    path = weights_file(model, weights)
    state = load_state(path)
    if model.startswith("densenet"):
        state = {(m.group(1) + m.group(2) if (m := _DENSENET_OLD_KEY.match(k)) else k): v for k, v in state.items()}
    net = tvm.get_model(model, weights=None, **_BUILD_ARGS.get(model, {}))
    # Files saved before PyTorch 0.4 (DenseNet's, among others) have no BatchNorm step counters; they are
    # not weights, and BatchNorm itself fills them in for such files. Prefixes (`module.`) and heads the
    # model lacks are handled by fit_state, as for every checkpoint.
    net.load_state_dict(fit_state(state, net, path, hint=f"Is it a state dict of torchvision's {model}?",
                                  optional=lambda key: key.endswith("num_batches_tracked")))
    return net


def _input_size(model: str, weights: str) -> int:
    """The crop size the model's published weights were trained at (224; 299 for Inception v3)."""
    sets = _weight_sets(model)
    if sets is None:
        return 224
    names = [w.name for w in sets]
    chosen = sets[weights] if weights in names else sets.DEFAULT
    return int(chosen.transforms().crop_size[0])


def pretrained_space(model: str, weights: str = "IMAGENET1K_V1", layer: str | None = None,
                     image_size: int | None = None, name: str | None = None, device="cpu") -> ModelSpace:
    """A pretrained torchvision CNN as a space; by default its pooled penultimate features."""
    if layer is None and model not in PENULTIMATE:
        raise UserError(f"Space {model!r}: name its `layer` (the penultimate layer is built in only for "
                        f"{', '.join(PENULTIMATE)}).")
    layer = layer or PENULTIMATE[model]
    size = image_size or _input_size(model, weights)
    weights_file(model, weights)  # fail now, before any work, when the file is missing
    settings = {"kind": "torchvision", "model": model, "weights": weights, "layer": layer, "image_size": size}
    return ModelSpace(name or model, settings, lambda: (load_pretrained(model, weights), layer, size), device)


def checkpoint_space(study, run: str, epoch: int | None = None, layer: str | None = None,
                     image_size: int | None = None, name: str | None = None, device="cpu") -> ModelSpace:
    """A checkpoint of the study as a space (default: the run's last epoch, pooled features)."""
    from ..nets.checkpoint_files import run_checkpoints
    from ..nets.checkpoints import load_into
    from ..nets.models import feature_layer, run_model

    spec = study.run(run)
    files = run_checkpoints(study, spec)
    if not files:
        raise UserError(f"Space from run {run!r}: it has no checkpoints in {study.run_dir(spec)}; train it first.")
    epoch = max(files) if epoch is None else epoch
    if epoch not in files:
        raise UserError(f"Space from run {run!r}: no checkpoint for epoch {epoch}; stored: {', '.join(map(str, files))}.")
    layer = layer or feature_layer(spec.arch, run_model(spec))
    size = image_size or spec.data.image_size
    settings = {"kind": "checkpoint", "run": run, "epoch": epoch, "layer": layer, "image_size": size,
                "arch": spec.arch, "width": spec.width, "small_input": spec.small_input}

    def build():
        return load_into(run_model(spec), files[epoch]), layer, size

    return ModelSpace(name or f"{run}-e{epoch}", settings, build, device)


def make_spaces(study, device="cpu") -> list:
    """The study's `analyze.spaces` as space objects (models are loaded on first use)."""
    spaces = []
    for entry in study.analyze.spaces:
        if isinstance(entry, str):
            spaces.append(PixelSpace() if entry == "pixel" else pretrained_space(entry, device=device))
        elif entry.model is not None:
            spaces.append(pretrained_space(entry.model, entry.weights, entry.layer, entry.image_size, entry.name, device))
        else:
            spaces.append(checkpoint_space(study, entry.run, entry.epoch, entry.layer, entry.image_size, entry.name, device))
    names = [s.name for s in spaces]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"analyze.spaces: two spaces are named {dupes}; give them distinct `name`s.")
    return spaces


def embed_images(space, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N, 3, S, S) -> (N, F), in batches of `batch_size` images."""
    return torch.cat([space.embed(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
