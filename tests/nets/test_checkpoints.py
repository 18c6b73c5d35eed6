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
