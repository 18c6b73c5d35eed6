import pytest
import torch
from torchvision.models import resnet18 as tv_resnet18

from protoscope.errors import UserError
from protoscope.nets.models import build_model, count_parameters


def test_width_one_is_torchvisions_resnet18():
    ours, theirs = build_model("resnet18", num_classes=1000), tv_resnet18()
    assert count_parameters(ours) == count_parameters(theirs)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    ours.load_state_dict(theirs.state_dict())  # a torchvision checkpoint loads as is
    x = torch.rand(2, 3, 64, 64)
    ours.eval(), theirs.eval()
    assert torch.allclose(ours(x), theirs(x))


def test_width_multiplier_and_small_stem():
    model = build_model("resnet18", width=0.25, small_input=True)
    widths = [model.layer1[0].conv1.out_channels, model.layer2[0].conv1.out_channels,
              model.layer3[0].conv1.out_channels, model.layer4[0].conv1.out_channels]
    assert widths == [16, 32, 64, 128]
    assert model.conv1.stride == (1, 1) and isinstance(model.maxpool, torch.nn.Identity)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 128)  # backbone: pooled features


def test_any_torchvision_model_by_name():
    model = build_model("alexnet", num_classes=10)
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 10)


def test_unknown_architecture_suggests():
    with pytest.raises(UserError, match="resnet18"):
        build_model("resnet81")
