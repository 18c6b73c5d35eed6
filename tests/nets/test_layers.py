import pytest
import torch

from protoscope.errors import UserError
from protoscope.nets.layers import check_layers, layer_names, truncate
from protoscope.nets.models import build_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = build_model("resnet18", width=0.25, small_input=True).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2)
    return net


@pytest.mark.parametrize("layer", ["layer1", "layer3", "layer3.1.conv2", "layer4.0.bn1", "avgpool"])
def test_truncated_forward_equals_the_full_models_activation(model, layer):
    captured = {}
    module = dict(model.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, i, o: captured.setdefault("out", o.detach().clone()))
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        model(x)
        got = truncate(model, layer)(x)[layer]
    handle.remove()
    assert torch.allclose(got, captured["out"], atol=1e-6)


def test_block_output_is_post_relu(model):
    out = truncate(model, "layer2")(torch.rand(2, 3, 32, 32))["layer2"]
    assert out.min() >= 0 and (out == 0).any()


def test_truncation_drops_later_layers(model):
    net = truncate(model, "layer2")
    names = {n for n, _ in net.named_modules()}
    assert any(n.startswith("body.layer2") for n in names)
    assert not any("layer3" in n or "layer4" in n or "fc" in n for n in names)


def test_several_layers_at_once(model):
    out = truncate(model, ["layer1", "layer4"])(torch.rand(1, 3, 32, 32))
    assert out["layer1"].shape == (1, 16, 32, 32) and out["layer4"].shape == (1, 128, 4, 4)


def test_wrong_layer_name_lists_the_valid_ones(model):
    with pytest.raises(UserError) as info:
        check_layers(model, ["layer1", "layer5"])
    message = str(info.value)
    assert "'layer5'" in message and "layer4" in message and "layer1" in message and "avgpool" in message
    assert "layer3.1.conv2" in layer_names(model)
