import pickle

import pytest
import torch

from protoscope.errors import UserError
from protoscope.nets.checkpoints import epoch_files, load_into, load_state, save_state
from protoscope.nets.models import build_model


def _model(width=0.125):
    torch.manual_seed(0)
    return build_model("resnet18", width=width, small_input=True)


def test_safetensors_round_trip(tmp_path):
    model = _model()
    save_state(tmp_path / "epoch_001.safetensors", model.state_dict())
    other = load_into(_model_seeded(1), tmp_path / "epoch_001.safetensors")
    for k, v in model.state_dict().items():
        assert torch.equal(v, other.state_dict()[k])
    assert not list(tmp_path.glob("*.tmp"))


def _model_seeded(seed):
    torch.manual_seed(seed)
    return build_model("resnet18", width=0.125, small_input=True)


def test_user_pt_state_dict_loads_with_weights_only(tmp_path):
    model = _model()
    torch.save(model.state_dict(), tmp_path / "epoch_000.pt")
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, tmp_path / "wrapped.pt")
    assert set(load_state(tmp_path / "epoch_000.pt")) == set(model.state_dict())
    load_into(_model_seeded(2), tmp_path / "wrapped.pt")


class _Payload:
    """Unpickling this would run code: it creates a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_payload_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"conv1.weight": _Payload(marker)}, f)
    with pytest.raises(UserError, match="evil.pt") as info:
        load_state(path)
    assert "unpickle" in str(info.value)
    assert not marker.exists()


def test_corrupt_checkpoint_names_the_file(tmp_path):
    model = _model()
    path = tmp_path / "epoch_002.safetensors"
    save_state(path, model.state_dict())
    path.write_bytes(path.read_bytes()[: 200])  # truncated
    with pytest.raises(UserError, match="epoch_002.safetensors"):
        load_into(model, path)
    garbage = tmp_path / "epoch_003.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="epoch_003.pt"):
        load_state(garbage)


def test_mismatched_architecture_names_file_and_keys(tmp_path):
    save_state(tmp_path / "narrow.safetensors", _model(0.125).state_dict())
    with pytest.raises(UserError) as info:
        load_into(_model(0.25), tmp_path / "narrow.safetensors")
    assert "narrow.safetensors" in str(info.value) and "wrong shape" in str(info.value) and "conv1.weight" in str(info.value)
    other = build_model("alexnet")
    with pytest.raises(UserError, match="missing"):
        load_into(other, tmp_path / "narrow.safetensors")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_state(tmp_path / "nope.safetensors")


def test_epoch_files(tmp_path):
    for name in ["epoch_000.safetensors", "epoch_10.pt", "epoch-2.pth", "notes.txt", "train_state.safetensors"]:
        (tmp_path / name).write_bytes(b"")
    assert list(epoch_files(tmp_path)) == [0, 2, 10]
    (tmp_path / "epoch_002.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match="Two checkpoints for epoch 2"):
        epoch_files(tmp_path)


# ---------------------------------------------------------------- the forms users' checkpoints come in

NOTES = "protoscope.nets.checkpoints"


def _notes(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == NOTES]


def _assert_same_weights(model, state):
    own = model.state_dict()
    assert set(own) <= set(state)
    for k, v in own.items():
        assert torch.equal(v, state[k]), k


def test_torchvision_state_dict_with_fc_head_loads_with_a_note(tmp_path, caplog):
    from torchvision.models import resnet18

    torch.manual_seed(3)
    tv = resnet18(num_classes=10)  # random init; the classifier head `fc` is what our backbone lacks
    torch.save(tv.state_dict(), tmp_path / "resnet18.pth")
    model = build_model("resnet18", width=1.0)  # fc is the identity: no fc.* keys
    assert not any(k.startswith("fc.") for k in model.state_dict())
    with caplog.at_level("WARNING", logger=NOTES):
        load_into(model, tmp_path / "resnet18.pth")
    _assert_same_weights(model, tv.state_dict())
    [note] = _notes(caplog)
    assert "\n" not in note and "resnet18.pth" in note and "fc.weight, fc.bias" in note


def test_wrapped_state_dicts_load(tmp_path, caplog):
    model = _model()
    state = model.state_dict()
    forms = {"state_dict.pt": {"state_dict": state, "epoch": 3}, "model.pt": {"model": state, "optimizer": {}},
             "model_state_dict.pth": {"model_state_dict": state},
             "nested.pt": {"model": {"state_dict": state}, "epoch": 1}}
    with caplog.at_level("WARNING", logger=NOTES):
        for name, obj in forms.items():
            torch.save(obj, tmp_path / name)
            _assert_same_weights(load_into(_model_seeded(2), tmp_path / name), state)
    assert not _notes(caplog)  # nothing was ignored


def test_module_and_compile_prefixes_load(tmp_path, caplog):
    model = _model()
    state = model.state_dict()
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "ddp.pt")
    save_state(tmp_path / "ddp.safetensors", {f"module.{k}": v for k, v in state.items()})
    torch.save({f"_orig_mod.{k}": v for k, v in state.items()}, tmp_path / "compiled.pt")
    # model.layer1 = torch.compile(model.layer1) puts the wrapper inside the keys
    torch.save({f"module.{k.replace('layer1.', 'layer1._orig_mod.')}": v for k, v in state.items()},
               tmp_path / "compiled_layer.pt")
    with caplog.at_level("WARNING", logger=NOTES):
        for name in ("ddp.pt", "ddp.safetensors", "compiled.pt", "compiled_layer.pt"):
            _assert_same_weights(load_into(_model_seeded(2), tmp_path / name), state)
    assert not _notes(caplog)


class _LightlySimCLR(torch.nn.Module):
    """lightly's SimCLR tutorial model: the backbone is `nn.Sequential(*list(resnet.children())[:-1])`
    (keys `backbone.0.weight`, `backbone.4.0.conv1.weight`, ...), next to a `projection_head`."""

    def __init__(self, resnet):
        super().__init__()
        self.backbone = torch.nn.Sequential(*list(resnet.children())[:-1])
        self.projection_head = torch.nn.Module()
        self.projection_head.layers = torch.nn.Sequential(
            torch.nn.Linear(64, 64, bias=False), torch.nn.BatchNorm1d(64), torch.nn.ReLU(), torch.nn.Linear(64, 16))


def test_lightly_simclr_checkpoint_loads_its_backbone_with_a_note(tmp_path, caplog):
    model = _model()  # width 0.125: 64 features
    simclr = _LightlySimCLR(model)
    assert "backbone.0.weight" in simclr.state_dict()
    torch.save(simclr.state_dict(), tmp_path / "simclr.ckpt.pt")
    # the same, by module name under a deeper prefix (a Lightning module's `model.backbone.`)
    named = {f"model.backbone.{k}": v for k, v in model.state_dict().items()}
    named |= {f"model.{k}": v for k, v in simclr.state_dict().items() if k.startswith("projection_head.")}
    torch.save({"state_dict": named}, tmp_path / "lightning.pt")
    with caplog.at_level("WARNING", logger=NOTES):
        _assert_same_weights(load_into(_model_seeded(2), tmp_path / "simclr.ckpt.pt"), model.state_dict())
        _assert_same_weights(load_into(_model_seeded(2), tmp_path / "lightning.pt"), model.state_dict())
    first, second = _notes(caplog)
    assert "simclr.ckpt.pt" in first and "'backbone.'" in first and "projection_head.* (8)" in first
    assert "lightning.pt" in second and "'model.backbone.'" in second and "model.projection_head.* (8)" in second
    assert "\n" not in first + second


def test_momentum_copy_is_ignored_and_two_equal_copies_are_refused(tmp_path):
    online, momentum = _model_seeded(1).state_dict(), _model_seeded(2).state_dict()
    moco = {f"backbone.{k}": v for k, v in online.items()} | {f"backbone_momentum.{k}": v for k, v in momentum.items()}
    torch.save(moco, tmp_path / "moco.pt")
    _assert_same_weights(load_into(_model_seeded(3), tmp_path / "moco.pt"), online)
    twins = {f"a.{k}": v for k, v in online.items()} | {f"b.{k}": v for k, v in momentum.items()}
    torch.save(twins, tmp_path / "twins.pt")
    with pytest.raises(UserError, match=r"twins\.pt holds the model's weights more than once.*'a\.', 'b\.'"):
        load_into(_model_seeded(3), tmp_path / "twins.pt")


def test_other_width_is_refused_naming_file_and_keys(tmp_path):
    torch.manual_seed(0)
    narrow = build_model("resnet18", width=0.125, small_input=True, num_classes=10)  # with an fc head
    torch.save(narrow.state_dict(), tmp_path / "narrow.pt")
    torch.save({f"backbone.{k}": v for k, v in narrow.state_dict().items()} | {"projection_head.0.weight": torch.zeros(2)},
               tmp_path / "narrow_simclr.pt")
    for name in ("narrow.pt", "narrow_simclr.pt"):
        with pytest.raises(UserError) as info:
            load_into(_model(0.25), tmp_path / name)
        message = str(info.value)
        assert name in message and "does not fit" in message and "wrong shape" in message and "conv1.weight" in message
    assert "under 'backbone.'" in message


def test_other_architecture_is_refused(tmp_path):
    state = _model().state_dict()
    save_state(tmp_path / "resnet.safetensors", state)
    with pytest.raises(UserError, match=r"resnet\.safetensors does not fit the architecture: \d+ missing"):
        load_into(build_model("squeezenet1_0"), tmp_path / "resnet.safetensors")
    # a deeper ResNet (ResNet-34's layer1 has a third block): every key of ours is there, yet its extra
    # keys are inside our modules, so it is another architecture, not a head to ignore
    deeper = state | {k.replace("layer1.1.", "layer1.2."): v for k, v in state.items() if k.startswith("layer1.1.")}
    torch.save({f"module.{k}": v for k, v in deeper.items()}, tmp_path / "deeper.pt")
    with pytest.raises(UserError, match=r"deeper\.pt does not fit the architecture: .*unexpected \(e\.g\. layer1\.2\."):
        load_into(_model(), tmp_path / "deeper.pt")
    # missing keys are never accepted, under a prefix either
    partial = {f"backbone.{k}": v for k, v in state.items() if not k.startswith("layer4.1.")}
    torch.save(partial | {"projection_head.0.weight": torch.zeros(2)}, tmp_path / "partial.pt")
    with pytest.raises(UserError, match=r"partial\.pt does not fit the architecture: \d+ missing \(e\.g\. layer4\.1\."):
        load_into(_model(), tmp_path / "partial.pt")


def test_pickled_payload_in_a_wrapped_pt_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {"conv1.weight": _Payload(marker)}}, tmp_path / "wrapped_evil.pt")
    torch.save(_model(), tmp_path / "whole_model.pt")  # a pickled nn.Module, not a state dict
    for name in ("wrapped_evil.pt", "whole_model.pt"):
        with pytest.raises(UserError, match=rf"Refused to load .*{name}.*unpickle"):
            load_into(_model(), tmp_path / name)
    assert not marker.exists()


# ---------------------------------------------------------------- checkpoints as other training code saves them

class _AttributeDict(dict):
    """Pickled under Lightning's own class names below, as Lightning's `save_hyperparameters` stores them."""


@pytest.mark.parametrize("where", ["pytorch_lightning.utilities.parsing", "lightning_fabric.utilities.data",
                                   "lightning.fabric.utilities.data", "lightning.pytorch.utilities.parsing"])
def test_lightning_checkpoint_with_hyper_parameters_loads(tmp_path, where, monkeypatch):
    """A Lightning .ckpt: the module's weights under `state_dict` (with its `model.` prefix), an
    AttributeDict of hyper-parameters, optimizer states and loop counters beside them."""
    import argparse
    import sys
    import types

    module = types.ModuleType(where)
    _AttributeDict.__module__, _AttributeDict.__qualname__ = where, "AttributeDict"
    module.AttributeDict = _AttributeDict
    for depth in range(1, where.count(".") + 2):  # pickle looks the class up by its dotted name
        monkeypatch.setitem(sys.modules, ".".join(where.split(".")[:depth]), types.ModuleType("stub"))
    monkeypatch.setitem(sys.modules, where, module)
    model = _model()
    checkpoint = {"epoch": 4, "global_step": 50, "pytorch-lightning_version": "2.5.0",
                  "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                  "hyper_parameters": _AttributeDict(lr=0.06, args=argparse.Namespace(width=0.125, arch="resnet18")),
                  "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.06, "params": [0, 1]}]}],
                  "loops": {"fit_loop": {"epoch_progress": {"current": {"completed": 4}}}}}
    path = tmp_path / "epoch=4-step=50.ckpt"
    torch.save(checkpoint, path)
    _assert_same_weights(load_into(_model_seeded(2), path), model.state_dict())


def test_a_pickled_object_beside_hyper_parameters_is_still_refused(tmp_path):
    """Allowing Namespace lets nothing else through: a payload next to it is refused, never run."""
    import argparse

    marker = tmp_path / "ran"
    torch.save({"state_dict": _model().state_dict(), "args": argparse.Namespace(lr=0.1),
                "payload": _Payload(str(marker))}, tmp_path / "model_best.pth.tar")
    with pytest.raises(UserError, match="never unpickles"):
        load_state(tmp_path / "model_best.pth.tar")
    assert not marker.exists()


@pytest.mark.parametrize("name", ["weights.ckpt", "pytorch_model.bin", "checkpoint.pth.tar"])
def test_every_suffix_torch_files_get(tmp_path, name):
    model = _model()
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, tmp_path / name)
    _assert_same_weights(load_into(_model_seeded(2), tmp_path / name), model.state_dict())


def test_lightning_file_names_are_epochs_after_the_first(tmp_path):
    """Lightning's epoch=k is saved when k+1 epochs are done: protoscope's epoch k+1."""
    for name in ["epoch=0-step=10.ckpt", "epoch=2-step=30.ckpt", "epoch=1.ckpt", "last.ckpt", "epoch_000.pt"]:
        (tmp_path / name).write_bytes(b"")
    assert {e: p.name for e, p in epoch_files(tmp_path).items()} == {
        0: "epoch_000.pt", 1: "epoch=0-step=10.ckpt", 2: "epoch=1.ckpt", 3: "epoch=2-step=30.ckpt"}
    (tmp_path / "epoch_001.pth.tar").write_bytes(b"")
    with pytest.raises(UserError, match="Two checkpoints for epoch 1"):
        epoch_files(tmp_path)


def test_moco_key_encoder_is_the_momentum_copy(tmp_path):
    """MoCo (FAIR's code) saves `module.encoder_q.*` (trained) and `module.encoder_k.*` (momentum)."""
    query, key = _model_seeded(1).state_dict(), _model_seeded(2).state_dict()
    moco = {f"module.encoder_q.{k}": v for k, v in query.items()} | {f"module.encoder_k.{k}": v for k, v in key.items()}
    torch.save({"epoch": 200, "arch": "resnet18", "state_dict": moco}, tmp_path / "checkpoint_0199.pth.tar")
    _assert_same_weights(load_into(_model_seeded(3), tmp_path / "checkpoint_0199.pth.tar"), query)


def test_file_name_patterns_say_which_file_is_which_epoch(tmp_path):
    from protoscope.nets.checkpoint_files import epoch_files

    for name in ("ckpt_0.pt", "ckpt_1.pt", "ckpt_1.pt.bak", "notes.txt", "epoch=0-step=9.ckpt", "epoch_000.safetensors"):
        (tmp_path / name).write_bytes(b"")
    assert {e: p.name for e, p in epoch_files(tmp_path, "ckpt_{epoch_index}.pt").items()} == {1: "ckpt_0.pt", 2: "ckpt_1.pt"}
    assert {e: p.name for e, p in epoch_files(tmp_path, "ckpt_{epoch}.pt").items()} == {0: "ckpt_0.pt", 1: "ckpt_1.pt"}
    assert {e: p.name for e, p in epoch_files(tmp_path).items()} == {0: "epoch_000.safetensors", 1: "epoch=0-step=9.ckpt"}
    assert {e: p.name for e, p in epoch_files(tmp_path, "epoch={epoch_index}-step={step}.ckpt").items()} == {
        1: "epoch=0-step=9.ckpt"}
