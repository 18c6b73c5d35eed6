import pytest
import torch

from protoscope.errors import UserError
from protoscope.nets.checkpoints import epoch_files, load_state
from protoscope.study import load_study
from protoscope.train.simclr import lr_at, train_run, trained_epochs


class Killed(Exception):
    pass


def _run(tiny_study, condition="clrjit"):
    study = load_study(tiny_study)
    return study, next(r for r in study.runs if r.condition == condition)


def test_checkpoint_series_and_run_file(tiny_study):
    study, run = _run(tiny_study)
    records = train_run(run, study.run_dir(run), torch.device("cpu"))
    folder = study.run_dir(run)
    assert [r["epoch"] for r in records] == [1, 2]
    assert list(epoch_files(folder)) == [0, 1, 2]  # epoch 0 = the initialization
    assert (folder / "run.yaml").is_file() and trained_epochs(folder) == 2
    init, last = load_state(folder / "epoch_000.safetensors"), load_state(folder / "epoch_002.safetensors")
    assert not torch.equal(init["conv1.weight"], last["conv1.weight"])  # training changed the weights
    assert train_run(run, folder, torch.device("cpu")) == []  # finished: nothing to do


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_resume_after_a_kill_mid_epoch_gives_the_same_weights(tiny_study, tmp_path, optimizer):
    """Resumed from the stored state (for AdamW its moments too), training ends where it would have."""
    study, run = _run(tiny_study)
    run = run.model_copy(update={"optimizer": run.optimizer.model_copy(update={"name": optimizer})})
    straight = tmp_path / "straight"
    train_run(run, straight, torch.device("cpu"))

    resumed = tmp_path / "resumed"

    def kill(epoch, step, loss):
        if epoch == 2 and step == 0:
            raise Killed

    with pytest.raises(Killed):
        train_run(run, resumed, torch.device("cpu"), on_step=kill)
    assert trained_epochs(resumed) == 1 and list(epoch_files(resumed)) == [0, 1]
    assert not list(resumed.glob("*.tmp"))
    records = train_run(run, resumed, torch.device("cpu"))
    assert [r["epoch"] for r in records] == [2]  # epoch 1 was not redone
    a, b = load_state(straight / "epoch_002.safetensors"), load_state(resumed / "epoch_002.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_changed_settings_refuse_to_continue_a_run(tiny_study, write_study):
    study, run = _run(tiny_study)
    train_run(run, study.run_dir(run), torch.device("cpu"))
    changed = run.model_copy(update={"optimizer": run.optimizer.model_copy(update={"lr": 0.5})})
    with pytest.raises(UserError, match="optimizer"):
        train_run(changed, study.run_dir(run), torch.device("cpu"))


def test_learning_rate_schedule(tiny_study):
    _, run = _run(tiny_study)
    total = 100
    lrs = [lr_at(run, s, total) for s in range(total)]
    peak = run.optimizer.lr
    assert lrs[0] == pytest.approx(peak / run.optimizer.warmup_steps)
    assert max(lrs) == pytest.approx(peak)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))  # cosine decay after warm-up
    assert lrs[-1] < 0.01 * peak
