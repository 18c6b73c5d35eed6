"""The width study's parts: translated digits, width families, the transfer measurement."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from protoscope.data.digits import translated_digits
from protoscope.data.shapes import CLASSES
from protoscope.data.width_tasks import coarse_labels, width_task
from protoscope.errors import UserError
from protoscope.nets.width import conv_family, count_parameters, fc_depth, fc_family, fc_parameters, features
from protoscope.train.probe import fit_probes
from protoscope.study import WidthSpec
from protoscope.train.width_study import width_rows


def test_translated_digits_place_each_digit_at_its_shift_class():
    data = translated_digits(200, canvas=16, positions=3, seed=1)
    assert data.images.shape == (200, 1, 16, 16) and data.images.max() <= 1 and data.images.min() == 0
    assert set(data.shift) == set(range(9)) and set(data.digit) <= set(range(10))
    ink = data.images[:, 0].sum(axis=2)  # (N, y): ink per row
    top = np.array([np.flatnonzero(r > 0)[0] for r in ink])
    means = [top[data.shift // 3 == row].mean() for row in range(3)]  # lattice rows 0, 1, 2 from the top
    assert means[0] < means[1] < means[2]
    again = translated_digits(200, canvas=16, positions=3, seed=1)
    assert np.array_equal(again.images, data.images) and np.array_equal(again.digit, data.digit)


def test_fc_family_keeps_the_parameter_count_it_claims():
    inputs, classes, budget = 256, 9, 60_000
    nets = fc_family(inputs, classes, [16, 32, 64, 128], budget)
    for width, net in nets.items():
        assert count_parameters(net) == fc_parameters(inputs, width, net.depth, classes)
    counts = [count_parameters(n) for n in nets.values()]
    assert max(counts) / min(counts) < 1.6  # about constant, where width varies 8x
    assert [n.depth for n in nets.values()] == sorted((n.depth for n in nets.values()), reverse=True)
    assert nets[16].depth > nets[128].depth == fc_depth(inputs, 128, classes, budget)


def test_conv_family_varies_only_the_penultimate_width():
    nets = conv_family(1, 9, [8, 64])
    x = torch.zeros(3, 1, 16, 16)
    assert features(nets[8], x).shape == (3, 8) and features(nets[64], x).shape == (3, 64)
    assert count_parameters(nets[64]) - count_parameters(nets[8]) == (32 * 16 + 1 + 9) * (64 - 8)


def test_a_linear_classifier_on_raw_inputs_matches_scikit_learn():
    """Our torch Adam linear probe against scikit-learn's logistic regression, on raw digits that are
    not translated (one lattice position, a pixel of jitter; translated, raw pixels are near chance)."""
    train, test = translated_digits(600, positions=1, seed=2), translated_digits(300, positions=1, seed=3)
    x_train, x_test = train.images.reshape(600, -1), test.images.reshape(300, -1)
    ours = fit_probes(x_train, train.digit, x_test, test.digit, ["adam"], adam_epochs=200)["adam"]["test"]
    scaler = StandardScaler().fit(x_train)
    theirs = LogisticRegression(max_iter=2000).fit(scaler.transform(x_train), train.digit)
    reference = (theirs.predict(scaler.transform(x_test)) == test.digit).mean()
    assert reference > 0.4 and abs(ours - reference) < 0.05, (ours, reference)  # chance: 0.1


def test_width_rows_train_and_measure_both_tasks():
    task = width_task(WidthSpec(train_size=800, test_size=400), seed=2)
    rows = width_rows("conv", conv_family(1, 9, [4, 32]), task, epochs=8)
    value = {(r["space"], r["metric"]): r["value"] for r in rows}
    assert value[("32", "width_original_accuracy")] > 0.5  # where the digit is: learnt (chance 1/9)
    assert value[("32", "width_new_accuracy")] > 0.15  # what it is: above chance (0.1) from frozen features
    assert value[("4", "width_parameters")] < value[("32", "width_parameters")]


def test_the_fc_depth_cap_keeps_narrow_nets_trainable():
    assert fc_depth(256, 32, 9, 60_000) == 50  # uncapped: what the constant budget asks for
    nets = fc_family(256, 9, [32, 128], 60_000, max_depth=8)
    assert nets[32].depth == 8 and nets[128].depth == fc_depth(256, 128, 9, 60_000) == 3


def test_the_shapes_task_splits_forms_into_blunt_and_pointed():
    task = width_task(WidthSpec(task="shapes", train_size=80, test_size=40, image_size=16), seed=0)
    assert task.x_train.shape == (80, 3, 16, 16) and task.classes == 2 and task.channels == 3
    pointed = np.isin(task.new_train, [CLASSES.index("triangle"), CLASSES.index("star")])
    assert np.array_equal(task.y_train.numpy(), pointed.astype(np.int64))  # blunt = 0, pointed = 1
    assert set(task.new_test) == {0, 1, 2, 3}
    other = width_task(WidthSpec(task="shapes", train_size=80, test_size=40, image_size=16), seed=1)
    assert not torch.equal(other.x_train, task.x_train)  # each seed its own images


def _folder(root, classes, per_class=6):
    from PIL import Image

    rng = np.random.default_rng(0)
    for index, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            pixels = np.full((12, 12, 3), 40 * index, np.uint8) + rng.integers(0, 20, (12, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{k}.png")


def test_an_image_folder_task_reads_the_coarse_to_fine_map(tmp_path):
    _folder(tmp_path / "pets", ["cat", "dog", "eagle", "owl"])
    coarse = {"mammal": ["cat", "dog"], "bird": ["eagle", "owl"]}
    task = width_task(WidthSpec(task="imagefolder", root=tmp_path / "pets", coarse=coarse, image_size=8,
                                train_size=50, test_size=20), seed=3)
    assert len(task.x_test) == 12 and len(task.x_train) == 12  # half the 24 images each, disjoint
    assert task.x_train.shape[1:] == (3, 8, 8) and task.classes == 2
    for fine, original in ((task.new_train, task.y_train), (task.new_test, task.y_test)):
        assert np.array_equal(original.numpy(), (np.asarray(fine) >= 2).astype(np.int64))  # ImageFolder sorts: cat dog eagle owl
    with pytest.raises(UserError, match=r"unknown \['lion'\], missing \['owl'\]"):
        coarse_labels(np.array([0]), ("cat", "dog", "eagle", "owl"), {"a": ["cat", "dog"], "b": ["eagle", "lion"]})
    with pytest.raises(UserError, match="'dog' is in two groups"):
        coarse_labels(np.array([0]), ("cat", "dog"), {"a": ["cat", "dog"], "b": ["dog"]})


def test_an_image_folder_width_study_without_a_map_is_refused():
    with pytest.raises(ValueError, match="set `root` and `coarse`"):
        WidthSpec(task="imagefolder", root="/tmp")


def test_protoscope_width_runs_the_study_and_resumes(tmp_path, write_study, capsys):
    from conftest import tiny_study_dict
    from protoscope.cli import main
    from protoscope.store import MetricsTable

    data = tiny_study_dict(tmp_path / "store")
    data["width"] = {"task": "shapes", "image_size": 12, "families": ["fc", "conv"], "widths": [8, 16], "max_depth": 30,
                     "seeds": [0, 1], "epochs": 3, "budget": 5000, "train_size": 300, "test_size": 100}
    path = write_study(data)
    assert main(["width", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "Width study" in printed and "width_study.png" in printed
    metrics = MetricsTable(tmp_path / "store").read("width")
    trained = metrics[metrics["layer"] != "raw"]
    assert len(trained) == 2 * 2 * 2 * 4  # family x width x seed x (original, new, parameters, depth)
    assert set(metrics[metrics["layer"] == "raw"]["seed"]) == {0, 1}
    assert metrics["value"].notna().all()
    fc = trained[(trained["layer"] == "fc") & (trained["metric"] == "width_parameters")]
    assert fc["value"].max() / fc["value"].min() < 1.6  # the fc family at about constant size
    assert (tmp_path / "store" / "figures" / "width_study.png").stat().st_size > 10_000
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "store" / "metrics" / "width").rglob("*.parquet")}
    assert main(["width", str(path)]) == 0
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "store" / "metrics" / "width").rglob("*.parquet")} == before
