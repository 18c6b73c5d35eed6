from pathlib import Path

import pytest

from protoscope.errors import UserError
from protoscope.study import load_study
from conftest import tiny_study_dict


def test_loads_and_expands_conditions_and_seeds(tmp_path, write_study):
    data = tiny_study_dict("store")
    data["runs"] = [{"condition": ["clrjit", "keepclr"], "seed": [0, 1]}, {"name": "wide-{seed}", "width": 0.125, "seed": 3}]
    study = load_study(write_study(data))
    names = [r.name for r in study.runs]
    assert names == ["clrjit-s0", "clrjit-s1", "keepclr-s0", "keepclr-s1", "wide-3"]
    assert study.runs[-1].width == 0.125 and study.runs[0].width == 0.0625  # override vs defaults
    assert study.runs[0].optimizer.batch_size == 32  # deep-merged from defaults
    assert study.store == (tmp_path / "store").resolve()  # relative to the file


@pytest.mark.parametrize(
    "edit, where",
    [
        (lambda d: d["defaults"]["optimizer"].update(lrr=0.1), "defaults.optimizer.lrr"),
        (lambda d: d["runs"].append({"condition": "clrjit", "seed": 5, "epoch": 3}), "runs[1].epoch"),
        (lambda d: d["runs"].append({"condition": "grayscale"}), "runs[1].condition"),
        (lambda d: d.update(layerz=["layer1"]), "layerz"),
        (lambda d: d["probe"].update(classifiers=["logreg", "knn"]), "probe.classifiers[1]"),
        (lambda d: d["defaults"]["simclr"]["augment"].update(cj_strenght=0.5), "cj_strenght"),
        (lambda d: d["defaults"]["simclr"]["augment"].update(cj_prob=0.5), "set by the run's condition"),
        (lambda d: d["defaults"]["data"].update(name="stl10"), "set `root`"),
        (lambda d: d["defaults"].update(epochs=-1), "defaults.epochs"),
    ],
)
def test_config_errors_name_the_file_and_field(write_study, edit, where):
    data = tiny_study_dict("store")
    edit(data)
    path = write_study(data)
    with pytest.raises(UserError) as info:
        load_study(path)
    assert str(path) in str(info.value)
    assert where in str(info.value)


def test_duplicate_run_names_are_refused(write_study):
    data = tiny_study_dict("store")
    data["runs"] = [{"condition": "clrjit", "seed": 0}, {"condition": "clrjit", "seed": 0}]
    with pytest.raises(UserError, match="unique"):
        load_study(write_study(data))


def test_bad_name_template(write_study):
    data = tiny_study_dict("store")
    data["runs"] = [{"name": "{colour}-run"}]
    with pytest.raises(UserError, match=r"runs\[0\]\.name"):
        load_study(write_study(data))


def test_yaml_syntax_error_names_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nruns: [\n")
    with pytest.raises(UserError, match="broken.yaml"):
        load_study(path)


def test_missing_file():
    with pytest.raises(UserError, match="not found"):
        load_study(Path("/nonexistent/study.yaml"))


def test_overrides_replace_nested_values(write_study):
    study = load_study(write_study(tiny_study_dict("store")), {"defaults": {"epochs": 7}, "store": "/tmp/elsewhere"})
    assert all(r.epochs == 7 for r in study.runs)
    assert str(study.store) == "/tmp/elsewhere"


def test_builtin_demo_study_is_valid():
    from protoscope.demo import demo_study

    study = demo_study("/tmp/x", quick=False)
    assert {r.condition for r in study.runs} == {"clrjit", "keepclr"}
    from protoscope.train.views import augment_settings, view_augmentation

    for run in study.runs:  # every run's augmentation is lightly's arguments, and kornia builds it
        assert set(run.simclr.augment) <= set(augment_settings(run))
        assert view_augmentation(run) is not None


def test_builtin_digits_study_is_the_demo_on_real_handwriting():
    from protoscope.demo import demo_study

    digits, demo = demo_study("/tmp/x", name="digits"), demo_study("/tmp/y")
    assert [r.name for r in digits.runs] == [r.name for r in demo.runs]
    assert {r.data.name for r in digits.runs} == {"digits"} and digits.width is None
    assert digits.probe.train_size == 1297 and digits.atlas.images == 500
    for a, b in zip(digits.runs, demo.runs):  # the demo's training recipe, on other data, without quarter turns
        assert a.simclr.augment == {k: v for k, v in b.simclr.augment.items() if k != "rr_prob"}
        assert a.model_dump(exclude={"data", "path", "simclr"}) == b.model_dump(exclude={"data", "path", "simclr"})
        assert a.simclr.model_dump(exclude={"augment"}) == b.simclr.model_dump(exclude={"augment"})
    quick = demo_study("/tmp/x", quick=True, name="digits")
    assert quick.width is None and quick.runs[0].epochs == 2


@pytest.mark.parametrize("axis", ["condition", "seed"])
def test_an_empty_condition_or_seed_list_is_refused(write_study, axis):
    """An empty list expands to no runs at all: a study that would do nothing, quietly."""
    data = tiny_study_dict("store")
    data["runs"] = [{"condition": "clrjit", "seed": 0}, {"condition": "keepclr", axis: []}]
    with pytest.raises(UserError, match=rf"runs\[1\]\.{axis}: .*at least one"):
        load_study(write_study(data))
