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


@pytest.mark.parametrize("arch,head,dim", [("alexnet", "classifier", 9216), ("mobilenet_v3_small", "classifier", 576),
                                           ("squeezenet1_0", "classifier", 512), ("shufflenet_v2_x0_5", "fc", 1024)])
def test_a_backbone_has_no_classifier_and_no_dropout(arch, head, dim):
    """SimCLR trains the backbone: the 1000-way classifier (and its Dropout) are gone from the model
    and its checkpoints; it returns the classifier's input, pooled where that was still a map."""
    from protoscope.nets.models import feature_layer

    torch.manual_seed(0)
    model = build_model(arch)
    assert not any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules())
    assert not any(key.startswith(head + ".") for key in model.state_dict())
    model.train()
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, dim)
    assert feature_layer(arch, model) == head


def test_a_vit_backbone_returns_its_class_token():
    torch.manual_seed(0)
    model = build_model("vit_b_16").eval()
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        tokens = torch.cat([model.class_token.expand(1, -1, -1), model._process_input(x)], dim=1)
        assert torch.allclose(model(x), model.encoder(tokens)[:, 0], atol=1e-5)
