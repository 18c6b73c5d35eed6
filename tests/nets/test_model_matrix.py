"""The model matrix: every in-memory API call on the kinds of model researchers bring (issue #27).

For each model (random weights, small inputs, a few units) every call either returns results that
a check recomputes independently, from the layer module's own output caught by a forward hook and
put units-first by hand with the layout the test knows, or refuses in one line (a vector layer
has no positions). The table of what each call gave and how long it took is printed at the end
(`pytest tests/nets/test_model_matrix.py -s -p no:xdist`, kept in bench/results/model_matrix.txt).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch
from torch import nn
from torchvision import models as tvm

import protoscope as ps
from protoscope.data.datasets import normalize
from protoscope.errors import UserError
from protoscope.synth.position import unit_position

from .test_units import Untraceable


class SmallCNN(nn.Module):
    """A researcher's own CNN: plain modules, a pooled vector layer at the end."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 12, 3, padding=1), nn.ReLU())
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.embed = nn.Linear(12, 6)

    def forward(self, x):
        return self.embed(self.pool(self.features(x)))


def _tv(arch: str, **options) -> Callable[[int], nn.Module]:
    def make(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return tvm.get_model(arch, weights=None, **options).eval()

    return make


def _own(cls, **kwargs) -> Callable[[int], nn.Module]:
    def make(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        model = cls(**kwargs).eval()
        return ps.declare(model, forward_kwargs={"scale": 1.5}) if cls is Untraceable else model

    return make


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[int], nn.Module]
    layer: str  # the module whose raw output is the reference
    layout: str  # what the test knows it is
    size: int
    element: str = ""  # a selector protoscope is asked for, e.g. "[0]" of a tuple output


CASES = [
    Case("custom CNN", _own(SmallCNN), "features.3", "NCHW", 32),
    Case("custom CNN (vector)", _own(SmallCNN), "embed", "ND", 32),
    Case("alexnet", _tv("alexnet"), "features.8", "NCHW", 64),
    Case("resnet50", _tv("resnet50"), "layer2", "NCHW", 64),
    Case("mobilenet_v3_small", _tv("mobilenet_v3_small"), "features.6", "NCHW", 64),
    Case("convnext_tiny", _tv("convnext_tiny"), "features.1.0.block.4", "NHWC", 64),
    # torchvision's Swin Transformer, small (swin_t's code at a quarter of its width, 2 blocks a stage): swin_t
    # itself took 65 s here, two thirds of the matrix, for the same layers and layout
    Case("swin (small)", _own(tvm.SwinTransformer, patch_size=[4, 4], embed_dim=24, depths=[2, 2, 2, 2],
                              num_heads=[1, 2, 3, 4], window_size=[4, 4]), "features.5", "NHWC", 64),
    Case("small ViT", _own(tvm.VisionTransformer, image_size=32, patch_size=8, num_layers=2, num_heads=2,
                           hidden_dim=16, mlp_dim=32), "encoder.layers.encoder_layer_1", "NTD", 32),
    Case("untraceable", _own(Untraceable), "pairs", "NCHW", 32, element="[0]"),
]
IMAGES = 24
TABLE: list[tuple] = []


@pytest.fixture(scope="module", autouse=True)
def print_the_matrix():
    """The table (seen with -s): model, layer, layout, each call's result or message, and its time."""
    yield
    for name, layer, layout, units, row in TABLE:
        print(f"\n{name} | {layer} | {layout} | {units} units")
        for call, result, seconds in row:
            print(f"    {call:16s} {seconds:6.2f} s  {result}")


def hooked(model: nn.Module, case: Case, x: torch.Tensor, grad: bool = False) -> torch.Tensor:
    """The layer module's own output for float images `x` in [0, 1], units first by hand."""
    kept = []
    def keep(_module, _args, out):  # a copy: an in-place ReLU after the layer would change it
        kept.append(tuple(o.clone() for o in out) if isinstance(out, tuple) else out.clone())

    handle = model.get_submodule(case.layer).register_forward_hook(keep)
    kwargs = getattr(model, "_matrix_kwargs", {})
    try:
        with torch.set_grad_enabled(grad):
            model(normalize(x), **kwargs)
    finally:
        handle.remove()
    out = kept[0][0] if case.element == "[0]" else kept[0]
    if case.layout == "NHWC":
        return out.permute(0, 3, 1, 2)
    if case.layout == "NTD":
        side = int(round((out.shape[1] - 1) ** 0.5))
        return out[:, 1:].transpose(1, 2).reshape(len(out), out.shape[2], side, side)
    return out


def _images(case: Case, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (IMAGES, 3, case.size, case.size), dtype=torch.uint8, generator=generator)


def _timed(row: list, call: str, fn: Callable[[], str]) -> None:
    start = time.perf_counter()
    try:
        result = fn()
    except UserError as exc:
        result = f"refused: {str(exc).splitlines()[0][:70]}"
    row.append((call, result, time.perf_counter() - start))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_call_on_every_model(case: Case):
    a, b = case.make(0), case.make(1)
    for model in (a, b):
        if isinstance(model, Untraceable):
            model._matrix_kwargs = {"scale": 1.5}
    layer = case.layer + case.element
    images = _images(case, 0)
    x = images.float() / 255
    with torch.no_grad():
        reference = hooked(a, case, x)
    units = reference.shape[1]
    row: list = []
    spatial = case.layout != "ND"
    _timed(row, "prototypes", lambda: _check_prototypes(a, case, layer, units, spatial))
    _timed(row, "receptive_field", lambda: _check_receptive_field(a, case, layer, spatial))
    _timed(row, "atlas", lambda: _check_atlas(a, case, layer, x, reference, units))
    _timed(row, "rdms", lambda: _check_rdms(a, layer, images, reference))
    _timed(row, "align", lambda: _check_align(a, b, case, layer, images, x, reference))
    TABLE.append((case.name, layer, case.layout, units, row))
    refused = [call for call, result, _ in row if result.startswith("refused")]
    assert refused == ([] if spatial else ["prototypes", "receptive_field"]), row


def _check_prototypes(model, case: Case, layer: str, units: int, spatial: bool) -> str:
    if not spatial:  # refused in one line: a vector layer has no centre
        ps.prototypes(model, layer, image_size=case.size, device="cpu")
    chosen = [0, units - 1]
    found = ps.prototypes(model, layer, units=chosen, image_size=case.size, pool_size=8, cma_generations=1,
                          adam_steps=3, device="cpu", precision="float32")
    assert found.images.shape == (2, case.size, case.size, 3)
    with torch.no_grad():  # rescored from the stored uint8 images: the unit's value at the studied cell
        acts = hooked(model, case, found.images.permute(0, 3, 1, 2).float() / 255)
    cell = unit_position(model, layer, case.size)
    rescored = acts[torch.arange(2), torch.tensor(chosen), cell.y, cell.x].clamp(min=0)
    assert torch.allclose(rescored, found.score, rtol=0.1, atol=0.05), (rescored, found.score)
    return f"{len(chosen)} units, score {found.score.max():.2f} (rescored {rescored.max():.2f})"


def _check_receptive_field(model, case: Case, layer: str, spatial: bool) -> str:
    if not spatial:
        ps.receptive_field(model, layer, case.size, samples=4)
    field = ps.receptive_field(model, layer, case.size, samples=16)
    assert field.map.shape == (case.size, case.size)
    noise = torch.rand(16, 3, case.size, case.size, generator=torch.Generator().manual_seed(5), requires_grad=True)
    acts = hooked(model, case, noise, grad=True)
    cell = unit_position(model, layer, case.size)
    acts[:, :, cell.y, cell.x].mean(1).sum().backward()
    by_hand = noise.grad.pow(2).sum(1).mean(0)  # the gradient of the studied cell's channel mean
    r = np.corrcoef(by_hand.flatten().numpy(), field.map.flatten().numpy())[0, 1]
    assert r > 0.6, r  # two estimates from different noise: close, not equal
    assert 0 < field.fit.sigma_major < 2 * case.size
    return f"sigma {field.fit.sigma_major:.1f} px, r = {r:.2f} with a hand gradient"


def _check_atlas(model, case: Case, layer: str, x, reference, units: int) -> str:
    from protoscope.analyze.atlas import sample_positions
    from protoscope.analyze.atlas_draw import layer_samples

    samples = layer_samples(model, layer, x, seed=3, device="cpu")
    if reference.ndim == 4:
        ys, xs = sample_positions(len(x), reference.shape[2], reference.shape[3], 3)
        expected = reference[torch.arange(len(x)), :, ys, xs].numpy()
    else:
        expected = reference.numpy()
    np.testing.assert_allclose(samples, expected, rtol=1e-4, atol=1e-4)
    if case.name == "alexnet":  # an icon too small for the model is refused before any work
        with pytest.raises(UserError, match="cannot take 16x16 images"):
            ps.atlas(model, layer, x, grid=2, icon_size=16, device="cpu")
    atlas = ps.atlas(model, layer, x, grid=2, min_count=1, pool_size=4, adam_steps=2, icon_size=32, device="cpu")
    assert atlas.direction.shape == (4, units) and atlas.count.sum() == len(x)
    return f"{int(atlas.filled.sum())} cells of {units}-d directions"


def _check_rdms(model, layer: str, images, reference) -> str:
    labels = torch.arange(len(images)) % 3
    rdm = ps.rdms(model, layer, images, labels, device="cpu")
    pooled = reference.mean(dim=(2, 3)) if reference.ndim == 4 else reference  # a unit's mean over positions
    expected = 1 - torch.corrcoef(pooled.double())
    got = torch.from_numpy(rdm.get_matrices()[0])
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()
    return f"{rdm.n_cond} x {rdm.n_cond} over {pooled.shape[1]} units"


def _check_align(a, b, case: Case, layer: str, images, x, reference) -> str:
    fit = ps.align(a, b, layer, images, device="cpu", mi_samples=200, penalties=[0.1], sparse_iter=5, clusters=2)
    with torch.no_grad():
        other = hooked(b, case, x)
    samples_a = reference.transpose(0, 1).flatten(1) if reference.ndim == 4 else reference.T
    samples_b = other.transpose(0, 1).flatten(1) if other.ndim == 4 else other.T
    both = torch.corrcoef(torch.cat([samples_a, samples_b]).double()).numpy()
    units = samples_a.shape[0]
    corr = fit.correlation
    expected = both[:units, units:][np.ix_(np.asarray(corr.alive_a_), np.asarray(corr.alive_b_))]
    np.testing.assert_allclose(corr.between_, expected, atol=1e-3)
    return f"between {corr.between_.shape[0]} x {corr.between_.shape[1]}"
