"""RSA: RDMs and comparisons against rsatoolbox and scipy, category dissimilarity on a hand-made RDM,
clear errors for degenerate stimulus sets, and the `rsa` stage end to end on random checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
from rsatoolbox.data import Dataset
from rsatoolbox.rdm import calc_rdm
from scipy.spatial.distance import pdist
from scipy.stats import pearsonr, spearmanr

from protoscope.store.activations import Activations
from protoscope.analyze.rsa import (
    category_dissimilarity, compare_rdms, epoch_rdms, separation_chance, trajectory_embedding, trajectory_metrics,
)
from protoscope.stages.activations import compute_activations
from protoscope.stages.rdms import rsa_run
from protoscope.store.rdms import load_rdms
from protoscope.errors import UserError

CATS = ("circle", "square", "star")


def fake(epochs=(0, 1, 2), images=12, units=6, seed=0, labels=None) -> Activations:
    rng = np.random.default_rng(seed)
    labels = np.arange(images) % len(CATS) if labels is None else np.asarray(labels)
    values = rng.normal(size=(len(epochs), images, units)).astype(np.float32)
    return Activations("r", "layer2", values, labels, CATS, list(epochs))


@pytest.mark.parametrize("distance, scipy_metric, scale", [("correlation", "correlation", 1), ("euclidean", "sqeuclidean", 6)])
def test_rdms_agree_with_scipy_pdist_and_rsatoolbox(distance, scipy_metric, scale):
    acts = fake()
    rdms = epoch_rdms(acts, distance)
    assert rdms.n_rdm == 3 and rdms.rdm_descriptors["epoch"] == [0, 1, 2]
    assert rdms.rdm_descriptors["run"] == ["r"] * 3 and rdms.rdm_descriptors["layer"] == ["layer2"] * 3
    assert list(rdms.pattern_descriptors["category"][:4]) == ["circle", "square", "star", "circle"]
    for i in range(3):
        x = acts.values[i].astype(np.float64)
        # rsatoolbox's euclidean is the squared distance divided by the number of units
        np.testing.assert_allclose(rdms.get_vectors()[i], pdist(x, scipy_metric) / scale, rtol=1e-9, atol=1e-12)
        direct = calc_rdm(Dataset(x), method=distance)
        np.testing.assert_allclose(rdms.get_vectors()[i], direct.get_vectors()[0], rtol=1e-12)


def test_comparisons_and_trajectory_metrics_agree_with_scipy():
    acts = fake(epochs=(0, 2, 5, 9))
    rdms = epoch_rdms(acts)
    v = rdms.get_vectors()
    sim_p = compare_rdms(rdms, rdms, "pearson")
    sim_s = compare_rdms(rdms, rdms, "spearman")
    assert sim_p[1, 2] == pytest.approx(pearsonr(v[1], v[2])[0], abs=1e-10)
    assert sim_s[0, 3] == pytest.approx(spearmanr(v[0], v[3])[0], abs=1e-10)

    rows = trajectory_metrics(rdms, CATS, ("pearson", "spearman"))
    pick = lambda metric: {r["epoch"]: r["value"] for r in rows if r["metric"] == metric}  # noqa: E731
    assert pick("rsa_consecutive_pearson") == pytest.approx(
        {e: pearsonr(v[i - 1], v[i])[0] for i, e in enumerate([0, 2, 5, 9]) if i}, abs=1e-10)
    assert pick("rsa_consecutive_spearman")[5] == pytest.approx(spearmanr(v[1], v[2])[0], abs=1e-10)
    assert pick("rsa_vs_final_pearson") == pytest.approx({e: pearsonr(v[i], v[3])[0] for i, e in enumerate([0, 2, 5, 9])}, abs=1e-10)
    assert pick("rsa_vs_final_spearman")[9] == pytest.approx(1.0)
    within = {(r["epoch"], r["space"]): r["value"] for r in rows if r["metric"] == "rsa_within"}
    assert set(within) == {(e, c) for e in (0, 2, 5, 9) for c in (*CATS, "mean")}
    assert within[(5, "mean")] == pytest.approx(np.mean([within[(5, c)] for c in CATS]))
    between = {(r["epoch"], r["space"]): r["value"] for r in rows if r["metric"] == "rsa_between"}
    separation = {(r["epoch"], r["space"]): r["value"] for r in rows if r["metric"] == "rsa_separation"}
    assert separation == pytest.approx({k: between[k] - within[k] for k in within})
    # epochs out of order come back sorted
    rev = epoch_rdms(Activations("r", "l", acts.values[::-1].copy(), acts.labels, CATS, [9, 5, 2, 0]))
    rows_rev = trajectory_metrics(rev, CATS, ("pearson",))
    got = {r["epoch"]: r["value"] for r in rows_rev if r["metric"] == "rsa_consecutive_pearson"}
    assert got == pytest.approx(pick("rsa_consecutive_pearson"))


def test_within_between_on_a_hand_made_rdm():
    d = np.array([
        [0, 1, 4, 5, 1],
        [1, 0, 6, 7, 2],
        [4, 6, 0, 2, 3],
        [5, 7, 2, 0, 4],
        [1, 2, 3, 4, 0],
    ], dtype=float)
    within, between = category_dissimilarity(d[None], ["a", "a", "b", "b", "c"], ["a", "b", "c", "empty"])
    assert within[0, :2] == pytest.approx([1.0, 2.0])
    assert np.isnan(within[0, 2]) and np.isnan(within[0, 3])  # one image of c, none of "empty"
    assert between[0, :3] == pytest.approx([(4 + 5 + 6 + 7 + 1 + 2) / 6, (4 + 5 + 6 + 7 + 3 + 4) / 6, (1 + 2 + 3 + 4) / 4])
    assert np.isnan(between[0, 3])


def test_separation_chance_against_planted_and_absent_categories():
    """Chance is what shuffled labels give: a weak planted category effect clears it, pure noise does not,
    and it sits where an independent shuffle (scipy's pdist, hand-counted means) puts it."""
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(3), 40)
    noise = rng.normal(size=(2, 120, 16))
    noise[1] += 0.35 * rng.normal(size=(3, 16))[labels]  # epoch 1: a small shift per category
    rdms = epoch_rdms(Activations("r", "l", noise.astype(np.float32), labels, CATS, [0, 1]))
    names = rdms.pattern_descriptors["category"]
    within, between = category_dissimilarity(rdms.get_matrices(), names, CATS)
    separation = (between - within).mean(axis=1)
    chance = separation_chance(rdms.get_matrices(), names, CATS, permutations=300)
    assert separation[0] < chance[0] and separation[1] > 3 * chance[1] > 0

    from scipy.spatial.distance import squareform

    d = squareform(pdist(noise[0], "correlation"))
    shuffled = []
    for _ in range(300):
        p = rng.permutation(labels)
        same, other = p[:, None] == p[None, :], p[:, None] != p[None, :]
        np.fill_diagonal(same, False)
        shuffled.append(np.mean([d[(p[:, None] == c) & other].mean() - d[(p[:, None] == c) & same].mean()
                                 for c in range(3)]))
    assert chance[0] == pytest.approx(np.quantile(shuffled, 0.99), abs=0.25 * np.std(shuffled))
    rows = trajectory_metrics(rdms, CATS, ("pearson",))
    stored = {r["epoch"]: r["value"] for r in rows if r["metric"] == "rsa_separation_chance"}
    assert stored == pytest.approx({0: separation_chance(rdms.get_matrices(), names, CATS)[0],
                                    1: separation_chance(rdms.get_matrices(), names, CATS)[1]})


def test_crossnobis_is_unbiased_between_categories():
    """Two categories drawn from one distribution: crossnobis ~ 0 (euclidean is not); a shifted one is far."""
    rng = np.random.default_rng(1)
    n, units = 60, 8
    labels = np.repeat([0, 1, 2], n)
    values = rng.normal(size=(1, 3 * n, units))
    values[0, labels == 2] += 1.5
    acts = Activations("r", "l", values.astype(np.float32), labels, CATS, [0])
    rdm = epoch_rdms(acts, "crossnobis", folds=3)
    assert rdm.n_cond == 3 and list(rdm.pattern_descriptors["category"]) == list(CATS)
    m = rdm.get_matrices()[0]
    assert abs(m[0, 1]) < 0.2 * m[0, 2] and m[0, 2] > 0.5 and m[1, 2] > 0.5
    assert rdm.rdm_descriptors["epoch"] == [0] and rdm.rdm_descriptors["run"] == ["r"]
    # categories as conditions: between-category metrics exist, within-category ones do not
    rows = trajectory_metrics(rdm, CATS, ("pearson",))
    assert {r["metric"] for r in rows} == {"rsa_vs_final_pearson", "rsa_between"}
    with pytest.raises(UserError, match="at least two categories with `rsa.folds`"):
        epoch_rdms(acts, "crossnobis", folds=100)


def test_constant_unit_is_fine_but_constant_layer_or_pattern_is_a_clear_error():
    acts = fake()
    acts.values[:, :, 2] = 3.0  # one unit constant over the stimulus set: nothing undefined
    rdms = epoch_rdms(acts)
    assert np.isfinite(rdms.dissimilarities).all()
    np.testing.assert_allclose(rdms.get_vectors()[1], pdist(acts.values[1].astype(float), "correlation"), atol=1e-12)

    dead = fake()
    dead.values[1] = 0.0  # every unit constant (a dead layer at epoch 1)
    with pytest.raises(UserError, match="epoch 1: 12 of 12 stimulus images give the same value on every unit"):
        epoch_rdms(dead)
    with pytest.raises(UserError, match="epoch 1: every pair of probe patterns is equally dissimilar"):
        epoch_rdms(dead, "euclidean")
    one_unit = fake(units=1)
    with pytest.raises(UserError, match="rsa.distance: euclidean"):
        epoch_rdms(one_unit)


def test_single_category_probe_set_is_a_clear_error(ckpt_study):
    import zarr

    from protoscope.store.activations import activation_store

    compute_activations(ckpt_study, runs=["a"], layers=["layer1"])
    group = zarr.open_group(activation_store(ckpt_study).path / "runs/a/layer1", mode="r+")
    group["label"][:] = 0
    with pytest.raises(UserError, match="single category \\('circle'\\)"):
        rsa_run(ckpt_study, ckpt_study.run("a"), ["layer1"])


def test_mds_embedding_orders_an_interpolated_trajectory():
    from rsatoolbox.rdm import RDMs

    rng = np.random.default_rng(0)
    a, b = rng.random(45), rng.random(45)
    steps = np.linspace(0, 1, 6)
    rdms = RDMs(np.stack([(1 - t) * a + t * b for t in steps]), rdm_descriptors={"epoch": list(range(6))})
    xy = trajectory_embedding(rdms)
    along = (xy - xy[0]) @ (xy[-1] - xy[0])
    assert np.all(np.diff(along) > 0)


def test_rdms_with_no_embedding_leave_it_out_and_the_figure_is_still_drawn(tmp_path, monkeypatch):
    """Three nearly identical RDMs (a layer that has stopped changing) made scikit-learn's MDS fail
    with "Input contains NaN", and the report died. The embedding is left out with a note instead."""
    import sklearn.manifold
    from rsatoolbox.rdm import RDMs

    from protoscope.report.rsa import mds

    rng = np.random.default_rng(0)
    base = rng.random(45)
    still = np.stack([base + 1e-8 * rng.random(45) for _ in range(3)])
    moving = np.stack([rng.random(45) for _ in range(3)])
    rdms = RDMs(np.concatenate([still, moving]), rdm_descriptors={
        "epoch": [0, 1, 2] * 2, "run": ["a"] * 6, "layer": ["still"] * 3 + ["moving"] * 3})
    xy = trajectory_embedding(rdms.subset("layer", "still"))
    assert xy is None or np.isfinite(xy).all()
    assert all(path.is_file() for path in mds(rdms, tmp_path / "rsa_mds", ["still", "moving"], {"a": "clrjit"}))

    def fails(self, *args, **kwargs):
        raise ValueError("Input contains NaN.")

    monkeypatch.setattr(sklearn.manifold.MDS, "fit_transform", fails)
    assert trajectory_embedding(rdms.subset("layer", "moving")) is None
    assert all(path.is_file() for path in mds(rdms, tmp_path / "rsa_mds_none", ["still", "moving"], {"a": "clrjit"}))


def test_figure_names_keep_a_layers_dots(tmp_path):
    """features.3 and features.8 are two figures; a name given with its suffix is not doubled."""
    import matplotlib.pyplot as plt

    from protoscope.report.figures import save

    names = [p.name for stem in ("prototypes_features.3", "prototypes_features.8", "probe.png")
             for p in save(plt.figure(), tmp_path / stem)]
    assert names == ["prototypes_features.3.png", "prototypes_features.3.pdf", "prototypes_features.8.png",
                     "prototypes_features.8.pdf", "probe.png", "probe.pdf"]


def test_rsa_stage_cli_figures_and_resume(ckpt_study, tmp_path, capsys):
    from protoscope import stages
    from protoscope.cli import main
    from protoscope.store import MetricsTable

    metrics = stages.rsa(ckpt_study)
    assert sorted(metrics["run"].unique()) == ["a", "b"] and sorted(metrics["layer"].unique()) == ["layer1", "layer3"]
    cons = metrics[metrics["metric"] == "rsa_consecutive_pearson"]
    assert sorted(cons["epoch"].unique()) == [1, 2] and cons["value"].between(-1, 1).all()
    assert metrics["value"].notna().all()

    rdms = load_rdms(ckpt_study, runs=["b"], layers=["layer3"])
    assert rdms.n_rdm == 3 and rdms.n_cond == 24 and rdms.rdm_descriptors["run"] == ["b"] * 3
    v = rdms.subset("epoch", 2).get_vectors()[0]
    final = metrics[(metrics["run"] == "b") & (metrics["layer"] == "layer3") & (metrics["metric"] == "rsa_vs_final_pearson")]
    r0 = pearsonr(rdms.subset("epoch", 0).get_vectors()[0], v)[0]
    assert final.set_index("epoch")["value"][0] == pytest.approx(r0, abs=1e-9)

    before = {p: p.stat().st_mtime_ns for p in (ckpt_study.store / "metrics" / "rsa").rglob("*.parquet")}
    study_file = tmp_path / "study.yaml"
    assert main(["rsa", str(study_file)]) == 0
    printed = capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (ckpt_study.store / "metrics" / "rsa").rglob("*.parquet")} == before
    figures = ckpt_study.store / "figures"
    for name in ("rsa_consecutive", "rsa_vs_final", "rsa_categories", "rsa_mds", "rsa_rdms_a", "rsa_rdms_b",
                 "rsa_separation"):
        assert (figures / f"{name}.png").stat().st_size > 5_000 and (figures / f"{name}.pdf").is_file()
        assert f"{name}.png" in printed
    assert len(MetricsTable(ckpt_study.store).read("rsa")) == len(metrics)

    # a typo in the section is an error naming the field
    import yaml

    raw = yaml.safe_load(study_file.read_text())
    raw["rsa"]["distanse"] = "euclidean"
    study_file.write_text(yaml.safe_dump(raw))
    assert main(["rsa", str(study_file)]) == 2
    assert "rsa.distanse" in capsys.readouterr().err


def test_crossnobis_stage_and_figures(tmp_path, write_study):
    """Category-level RDMs through the stage and every figure (no within-category curves, no NaNs)."""
    from protoscope import stages
    from protoscope.report.rsa import rsa_figures
    from protoscope.study import load_study

    from .conftest import checkpoint_study_dict

    raw = checkpoint_study_dict(tmp_path, names=("a",), distance="crossnobis", folds=3, layers=["layer3"])
    study = load_study(write_study(raw))
    metrics = stages.rsa(study)
    assert set(metrics["metric"]) == {"rsa_consecutive_pearson", "rsa_consecutive_spearman", "rsa_vs_final_pearson",
                                      "rsa_vs_final_spearman", "rsa_between", "dim_participation_ratio", "dim_rankme"}
    assert metrics["value"].notna().all()
    assert load_rdms(study).n_cond == 4
    names = {p.stem for p in rsa_figures(study, metrics, tmp_path / "figures")}
    assert {"rsa_consecutive", "rsa_categories", "rsa_rdms_a", "rsa_mds", "effective_dimensionality"} <= names
    assert "rsa_separation" not in names
