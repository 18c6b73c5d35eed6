"""A unit for every kind of layer, read the same way by every method (`protoscope.nets.units`).

Tiny models of each layout — a convolution (NCHW), channels last (NHWC, as Swin's stages), tokens
(NTD: torchvision's VisionTransformer), a vector (ND) — and models torch.fx cannot trace. Each
check recomputes the expected activations by hand from a forward hook on the raw module.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import VisionTransformer

import protoscope as ps
from protoscope.analyze.activations import layer_activations
from protoscope.errors import UserError
from protoscope.nets.layers import check_layers, truncate

torch.manual_seed(0)
IMAGES = torch.rand(12, 3, 32, 32)


def raw_output(model: nn.Module, module: str, x: torch.Tensor):
    """The module's own output, by a forward hook: the independent reference."""
    kept = []
    handle = model.get_submodule(module).register_forward_hook(lambda m, a, out: kept.append(out))
    with torch.no_grad():
        model(x)
    handle.remove()
    return kept[0]


class ChannelsLast(nn.Module):
    """A conv whose block ends channels last, as torchvision's Swin stages do."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.stage = nn.Sequential(nn.Conv2d(6, 5, 3, stride=2, padding=1), Permute(), nn.LayerNorm(5))
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        return self.head(self.stage(self.conv(x)).mean(dim=(1, 2)))


class Permute(nn.Module):
    def forward(self, x):
        return x.permute(0, 2, 3, 1)


class Untraceable(nn.Module):
    """A data-dependent `if` after the layer and a required extra argument: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 7, 3, stride=2))
        self.pairs = Pair()
        self.head = nn.Linear(7, 3)
        self.head_calls = 0

    def forward(self, x, scale):
        h = self.features(x) * scale
        first, second = self.pairs(h)
        if first.sum() > 0:  # data-dependent control flow
            first = first + 1
        self.head_calls += 1
        return self.head(first.mean(dim=(2, 3)) + second.mean(dim=(2, 3)))


class Pair(nn.Module):
    def forward(self, h):
        return h.relu(), -h


def tiny_vit() -> VisionTransformer:
    torch.manual_seed(1)
    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32).eval()


def test_conv_layers_stay_channels_first():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 5, 3, stride=2), nn.ReLU(), nn.Conv2d(5, 9, 3)).eval()
    out = truncate(model, "2")(IMAGES)["2"]
    assert torch.equal(out, raw_output(model, "2", IMAGES))


def test_channels_last_outputs_are_read_with_channels_as_units():
    model = ChannelsLast().eval()
    raw = raw_output(model, "stage", IMAGES)  # (N, 8, 8, 5)
    out = truncate(model, "stage")(IMAGES)["stage"]
    assert out.shape == (12, 5, 8, 8) and torch.equal(out, raw.permute(0, 3, 1, 2))
    acts = layer_activations(model, "stage", (IMAGES * 255).to(torch.uint8), device="cpu")["stage"]
    assert acts.shape == (12, 5)  # five units, not eight rows


def test_vit_tokens_are_features_on_the_patch_grid_with_the_class_token_apart():
    model = tiny_vit()
    layer = "encoder.layers.encoder_layer_1"
    raw = raw_output(model, layer, IMAGES)  # (N, 1 + 16, 16)
    out = truncate(model, [layer, f"{layer}[cls]"])(IMAGES)
    grid = raw[:, 1:].reshape(12, 4, 4, 16).permute(0, 3, 1, 2)  # patches row by row, features as units
    assert out[layer].shape == (12, 16, 4, 4) and torch.allclose(out[layer], grid, atol=1e-5)
    assert torch.allclose(out[f"{layer}[cls]"], raw[:, 0], atol=1e-5)
    pooled = layer_activations(model, layer, (IMAGES * 255).to(torch.uint8), device="cpu")[layer]
    expected = raw_output(model, layer, _normalized(IMAGES))[:, 1:].mean(1)
    assert pooled.shape == (12, 16) and torch.allclose(pooled, expected, atol=1e-5)


def _normalized(images):
    from protoscope.data.datasets import normalize

    return normalize((images * 255).to(torch.uint8))


def test_rdms_and_align_read_token_features_not_tokens():
    """The mistakes the issue measured: RDMs on (N, 197) token means, alignment of tokens as units."""
    a, b = tiny_vit(), tiny_vit()
    layer = "encoder.layers.encoder_layer_1"
    images = (IMAGES * 255).to(torch.uint8)
    rdm = ps.rdms(a, layer, images, torch.arange(12) % 2, device="cpu")
    feats = raw_output(a, layer, _normalized(IMAGES))[:, 1:].mean(1).numpy()  # (12, 16): per-feature patch means
    expected = 1 - torch.corrcoef(torch.from_numpy(feats))
    assert torch.allclose(torch.from_numpy(rdm.get_matrices()[0]).float(), expected.float(), atol=1e-4)
    fit = ps.align(a, b, layer, images, device="cpu", mi_samples=0, penalties=[0.1], sparse_iter=5)
    assert fit.correlation.between_.shape == (16, 16)


def test_a_model_that_does_not_trace_is_read_with_hooks_and_stops_after_the_layer():
    model = Untraceable().eval()
    scale = torch.tensor(2.0)
    with pytest.raises(UserError, match="forward_kwargs"):
        truncate(model, "features")(IMAGES)
    net = truncate(model, ["features", "pairs[1]"], forward_kwargs={"scale": scale})
    out = net(IMAGES)
    with torch.no_grad():
        expected = model.features(IMAGES)
    assert torch.equal(out["features"], expected)
    assert torch.equal(out["pairs[1]"], -(expected * scale))
    calls = model.head_calls
    net(IMAGES)
    assert model.head_calls == calls  # the pass stopped after the last requested layer


def test_a_tuple_output_must_name_its_element():
    model = Untraceable().eval()
    with pytest.raises(UserError, match=r"pairs\[0\]"):
        truncate(model, "pairs", forward_kwargs={"scale": 1.0})(IMAGES)
    with pytest.raises(UserError, match="no element 2"):
        truncate(model, "pairs[2]", forward_kwargs={"scale": 1.0})(IMAGES)


def test_names_are_checked_without_tracing_and_wrong_ones_listed():
    model = Untraceable()
    assert check_layers(model, ["features.2", "pairs[0]"]) == ["features.2", "pairs[0]"]
    with pytest.raises(UserError, match="features"):
        check_layers(model, ["featurs"])


def test_prototypes_of_a_channels_last_layer_score_its_channels():
    """Prototypes and receptive fields read the channel axis: 5 units (not 8 rows), and the receptive
    field of the centre cell lies inside the image."""
    model = ChannelsLast().eval()
    protos = ps.prototypes(model, "stage", image_size=32, pool_size=8, adam_steps=2, cma_generations=1, device="cpu")
    assert protos.images.shape[0] == 5
    field = ps.receptive_field(model, "stage", image_size=32, samples=8)
    assert 0 < field.fit.sigma_major < 32


def test_a_vector_layer_refuses_a_spatial_method_in_one_line():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 6)).eval()
    assert truncate(model, "3")(IMAGES)["3"].shape == (12, 6)
    with pytest.raises(UserError, match="conv layer"):
        ps.prototypes(model, "3", image_size=32, pool_size=8, adam_steps=2, cma_generations=1, device="cpu")


class FixedSize(nn.Module):
    """Channels last with as many channels as rows and columns, and one input size only: nothing
    tells its channel axis, so it must be declared."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 8, stride=8)
        self.block = Permute()

    def forward(self, x):
        assert x.shape[-1] == 32, "this model takes 32 px images"
        return self.block(self.conv(x)).mean(dim=(1, 2))


def test_what_cannot_be_found_is_refused_then_read_once_declared():
    model = FixedSize().eval()
    with pytest.raises(UserError, match="declare its layout"):
        truncate(model, "block")(IMAGES)
    ps.declare(model, layouts={"block": "NHWC"})
    with torch.no_grad():
        expected = model.conv(IMAGES)
    assert torch.equal(truncate(model, "block")(IMAGES)["block"], expected)  # (N, 4 channels, 4, 4)
    with pytest.raises(UserError, match="valid: NCHW, NHWC, NTD, ND"):
        ps.declare(model, layouts={"block": "CHW"})


def test_forward_arguments_declared_once_reach_every_call():
    model = ps.declare(Untraceable().eval(), forward_kwargs={"scale": 1.5})
    images = (IMAGES * 255).to(torch.uint8)
    rdm = ps.rdms(model, "features", images, torch.arange(12) % 2, device="cpu")
    assert rdm.n_rdm == 1 and rdm.dissimilarities.shape == (1, 66)


def test_a_vit_given_images_of_another_size_is_refused_in_one_line():
    """torchvision's ViT asserts its input size inside forward (raw, an AssertionError)."""
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    with pytest.raises(UserError, match=r"cannot take 16x16 images .*Expected 32 but got another size"):
        ps.rdms(tiny_vit(), "encoder.layers.encoder_layer_1", images, torch.arange(4) % 2, device="cpu")
