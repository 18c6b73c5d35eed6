"""Batch norm folded into convolutions (`synth/fold.py`): the same numbers as the unfolded net, and
never stale after new weights are loaded into the model."""

import pytest
import torch
from torch import nn

from protoscope.nets.models import build_model
from protoscope.synth.fold import FoldedConvBN, fold_batchnorm
from protoscope.synth.layer import layer_forward

pytestmark = pytest.mark.timeout(120)


def _randomise_bn(model: nn.Module, seed: int) -> nn.Module:
    """Running statistics and affine parameters far from BN's identity defaults."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen))
                m.running_var.copy_(0.2 + torch.rand(n, generator=gen))
                m.weight.copy_(1 + 0.5 * torch.randn(n, generator=gen))
                m.bias.copy_(0.3 * torch.randn(n, generator=gen))
    return model.eval().requires_grad_(False)


def _resnet(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return _randomise_bn(build_model("resnet18"), seed)


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    """Equal up to float32 rounding, measured against the tensor's own scale."""
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5 * float(want.detach().abs().max()))


def _forwards(model, layer="layer2", size=32):
    plain, _ = layer_forward(model, layer, size, crop=False, channels_last=False)
    folded, _ = layer_forward(model, layer, size, crop=False, channels_last=False, fold=True)
    return plain, folded


def test_folded_forward_and_gradient_equal_the_plain_ones():
    model = _resnet(0)
    plain, folded = _forwards(model)
    x = torch.rand(3, 3, 32, 32)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a, b = plain(xa), folded(xb)
    _close(b, a)
    a.square().sum().backward()
    b.square().sum().backward()
    _close(xb.grad, xa.grad)


def test_every_conv_bn_pair_up_to_the_layer_is_folded():
    from protoscope.nets.layers import truncate

    net = truncate(_resnet(0), "layer2")
    # stem 1 + layer1 2 blocks x 2 + layer2 2 blocks x 2 + layer2's downsample 1
    assert fold_batchnorm(net.body) == 10
    called = [net.body.get_submodule(n.target) for n in net.body.graph.nodes if n.op == "call_module"]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in called)


def test_new_weights_loaded_into_the_model_are_seen():
    """The evolve stage loads each checkpoint into the traced model: a cached fold must not go stale."""
    model = _resnet(0)
    plain, folded = _forwards(model)
    x = torch.rand(2, 3, 32, 32)
    folded(x)  # fills the cache with the first weights
    assert not any(m.training for m in model.modules())  # the fold left the model's modes alone
    model.load_state_dict(_resnet(1).state_dict())
    _close(folded(x), plain(x))
    assert not torch.allclose(plain(x), _forwards(_resnet(0))[0](x), atol=1e-3)  # the weights did change


def test_training_mode_and_shared_conv_outputs_are_left_as_they_are():
    class Both(nn.Module):  # the conv's output feeds the BN and a second branch
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    traced = torch.fx.symbolic_trace(_randomise_bn(Both(), 2))
    assert fold_batchnorm(traced) == 0
    block = FoldedConvBN(nn.Conv2d(3, 4, 3), _randomise_bn(nn.BatchNorm2d(4), 3))
    block.bn.train()
    x = torch.rand(4, 3, 8, 8)
    torch.testing.assert_close(block(x), block.bn(block.conv(x)))  # batch statistics, not the folded ones
