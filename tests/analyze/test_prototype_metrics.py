"""Prototype metrics on hand-made prototypes with known answers, against naive references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from protoscope.stages import analyze as analyze_prototypes
from protoscope.analyze.prototype_metrics import (
    change, consistency, diversity, masked_images, paired, pairwise, usable_masks,
)
from protoscope.store import MetricsTable, open_store
from protoscope.store.arrays import ArrayStore
from protoscope.study import load_study


def naive(a: np.ndarray, b: np.ndarray, distance: str) -> float:
    """One pair, the textbook way."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    if distance == "mse":
        return float(((a - b) ** 2).mean())
    return float(1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("distance", ["mse", "cosine"])
def test_batched_distances_equal_a_naive_reference(distance):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 9, 50, generator=g) + 5.0  # far from the origin: the matmul form must not cancel
    got = pairwise(x, distance).numpy()
    for b in range(3):
        ref = cdist(x[b].double().numpy(), x[b].double().numpy(), "sqeuclidean" if distance == "mse" else "cosine")
        ref = ref / (x.shape[-1] if distance == "mse" else 1)
        np.testing.assert_allclose(got[b], ref, rtol=1e-3, atol=1e-6)
        assert (np.diag(got[b]) == 0).all()
    y = torch.rand(3, 9, 50, generator=g)
    want = np.array([[naive(x[b, i].numpy(), y[b, i].numpy(), distance) for i in range(9)] for b in range(3)])
    np.testing.assert_allclose(paired(x, y, distance).numpy(), want, rtol=1e-5, atol=1e-7)


def test_diversity_of_three_hand_made_units():
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    # squared distances / 2 dims: d01 = d02 = 2, d12 = 4
    value, per_unit = diversity(x, "mse")
    assert value.item() == pytest.approx(8 / 3)
    np.testing.assert_allclose(per_unit.numpy(), [2, 3, 3])
    # leaving out unit 2 (say it is silent): only the pair (0, 1) is left
    value, per_unit = diversity(x, "mse", torch.tensor([True, True, False]))
    assert value.item() == pytest.approx(2) and math.isnan(per_unit[2])
    # cosine: units 1 and 2 are orthogonal; unit 0 is the zero vector (orthogonal to both by convention)
    value, _ = diversity(x, "cosine")
    assert value.item() == pytest.approx(1.0)
    # fewer than two units: undefined, not zero
    assert math.isnan(diversity(x[:1], "mse")[0].item())


@pytest.mark.parametrize("distance", ["mse", "cosine"])
def test_a_permutation_of_units_leaves_diversity_unchanged(distance):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 12, 30, generator=g)
    valid = torch.rand(2, 12, generator=g) > 0.3
    perm = torch.randperm(12, generator=g)
    value, per_unit = diversity(x, distance, valid)
    value_p, per_unit_p = diversity(x[:, perm], distance, valid[:, perm])
    torch.testing.assert_close(value_p, value)
    torch.testing.assert_close(per_unit_p, per_unit[:, perm], equal_nan=True)


@pytest.mark.parametrize("distance", ["mse", "cosine"])
def test_identical_prototypes_give_zero_change_and_perfect_consistency(distance):
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 6, 40, generator=g)
    x[0, 3] = 0  # an all-zero vector too
    value, per_unit = change(x, x.clone(), distance)
    assert (per_unit == 0).all() and (value == 0).all()
    value, per_unit = consistency(torch.stack([x[0], x[0].clone()]), distance)
    assert value.item() == 0 and (per_unit == 0).all()
    # and a different prototype is not at distance zero (the zero vector flipped is itself)
    moved = change(x, x.flip(-1), distance)[1]
    assert (moved[0, 3] == 0) and (moved.flatten()[torch.arange(12) != 3] > 0).all()


def test_change_and_consistency_skip_invalid_units_and_average_pairs_of_repeats():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 5, 20, generator=g)  # 3 repeats
    valid = torch.ones(3, 5, dtype=torch.bool)
    valid[2, 4] = False
    value, per_unit = consistency(x, "mse", valid)
    pairs = [(0, 1), (0, 2), (1, 2)]
    per_pair_unit = np.array([[naive(x[r, u].numpy(), x[s, u].numpy(), "mse") if valid[r, u] and valid[s, u]
                               else np.nan for u in range(5)] for r, s in pairs])
    np.testing.assert_allclose(per_unit.numpy(), np.nanmean(per_pair_unit, 0), rtol=1e-5)
    assert value.item() == pytest.approx(np.mean(np.nanmean(per_pair_unit, 1)), rel=1e-5)
    value, per_unit = change(x[0], x[1], "cosine", valid[2], None)
    assert math.isnan(per_unit[4]) and value.item() == pytest.approx(per_unit[:4].mean().item())
    assert math.isnan(consistency(x[:1], "mse")[0].item())  # one repeat: nothing to compare


def test_masks_multiply_and_an_all_zero_or_missing_mask_falls_back_to_unmasked():
    protos = torch.randint(0, 256, (2, 3, 4, 4, 3), dtype=torch.uint8)  # (repeat, unit, y, x, rgb)
    plain = protos.permute(0, 1, 4, 2, 3).float() / 255
    torch.testing.assert_close(masked_images(protos, None), plain)
    mask = torch.zeros(4, 4)
    mask[1:3, 1:3] = 1.0
    torch.testing.assert_close(masked_images(protos, mask), plain * mask)
    # all-zero, and never written (NaN): compared unmasked, and reported as unusable
    for bad in (torch.zeros(4, 4), torch.full((4, 4), float("nan"))):
        torch.testing.assert_close(masked_images(protos, bad), plain)
        assert not usable_masks(bad)[1]
    per_unit = torch.stack([mask, torch.zeros(4, 4), mask * 0.5])
    out = masked_images(protos, per_unit)
    torch.testing.assert_close(out[:, 0], plain[:, 0] * mask)
    torch.testing.assert_close(out[:, 1], plain[:, 1])
    torch.testing.assert_close(out[:, 2], plain[:, 2] * mask * 0.5)
    assert usable_masks(per_unit)[1].tolist() == [True, False, True]


# ---------------------------------------------------------------- the stage, on a hand-made store

S, U, EPOCHS = 8, 5, [0, 1, 2]


def _write_store(root, mask_epoch1=None, rf="layer"):
    """One run, one layer: epoch 1 repeats epoch 0's prototypes exactly; unit 4 is silent at epoch 2."""
    rng = np.random.default_rng(0)
    store = ArrayStore(root / "arrays.zarr")
    store.ensure_layer("clrjit-s0", "layer1", epochs=EPOCHS, repeats=2, units=U, image_size=S, latent_dim=1, steps=1,
                       attrs={"synth_rf": rf})
    protos = {(e, r): rng.integers(0, 256, (U, S, S, 3), dtype=np.uint8) for e in EPOCHS for r in range(2)}
    for r in range(2):
        protos[1, r] = protos[0, r].copy()
    mask = np.zeros((S, S), np.float32)
    mask[2:6, 2:6] = 1
    for e in EPOCHS:
        store.write_rf("clrjit-s0", "layer1", e, mask, mask if e != 1 or mask_epoch1 is None else mask_epoch1)
        for r in range(2):
            silent = np.zeros(U, bool)
            silent[4] = e == 2
            store.write_job("clrjit-s0", "layer1", e, r, prototype=protos[e, r], score=np.ones(U, np.float32),
                            latent=np.zeros((U, 1), np.float32), trace=np.zeros((U, 1), np.float32), silent=silent)
    return protos, mask


def _study(tmp_path, write_study, **analyze):
    return load_study(write_study({
        "name": "hand", "store": str(tmp_path / "store"), "device": "cpu", "layers": ["layer1"],
        "runs": [{"condition": "clrjit", "seed": 0}],
        "analyze": dict({"spaces": ["pixel"], "distances": ["mse", "cosine"]}, **analyze),
    }))


def test_the_stage_writes_known_values_resumes_and_recomputes_when_jobs_are_added(tmp_path, write_study):
    study = _study(tmp_path, write_study)
    protos, mask = _write_store(study.store)
    assert analyze_prototypes(study) == 1
    table = MetricsTable(study.store).read("analyze")
    get = lambda metric, epoch, repeat=None: table[(table.metric == metric) & (table.epoch == epoch) & (  # noqa: E731
        table.repeat.isna() if repeat is None else table.repeat == repeat)]["value"].item()

    # epoch 1 == epoch 0: zero change; diversity equals the naive mean over pairs of masked units
    assert get("change_mse", 0, 0) == 0 and get("change_cosine", 0, 1) == 0
    vectors = lambda e, r: [(protos[e, r][u] / 255 * mask[..., None]).ravel() for u in range(U)]  # noqa: E731
    for e, r, units in ((0, 1, range(U)), (2, 0, range(U - 1))):  # unit 4 is silent at epoch 2: left out
        v = vectors(e, r)
        pairs = [naive(v[i], v[j], "cosine") for i in units for j in units if i < j]
        assert get("diversity_cosine", e, r) == pytest.approx(np.mean(pairs), rel=1e-5)
    v0, v1 = vectors(2, 0), vectors(2, 1)
    want = np.mean([naive(v0[u], v1[u], "mse") for u in range(U - 1)])
    assert get("consistency_mse", 2) == pytest.approx(want, rel=1e-5)
    assert not (table.metric.str.startswith("change") & (table.epoch == 2)).any()  # no epoch after the last
    assert set(table[table.metric == "masked_fraction"]["value"]) == {1.0}

    # per-unit values: named dims, unit i = channel i, silent units NaN
    tree = open_store(study.store / "unit_metrics.zarr")
    ds = tree["pixel/clrjit-s0/layer1"].ds
    assert ds.change_mse.dims == ("epoch", "repeat", "unit") and ds.consistency_mse.dims == ("epoch", "unit")
    assert (ds.change_mse.sel(epoch=0).values == 0).all()
    assert np.isnan(ds.diversity_mse.sel(epoch=2, unit=4).values).all()
    assert np.isnan(ds.change_mse.sel(epoch=2).values).all()

    # nothing missing: nothing recomputed, no file rewritten
    files = {p: p.stat().st_mtime_ns for p in (study.store / "metrics").rglob("*.parquet")}
    assert analyze_prototypes(study) == 0
    assert {p: p.stat().st_mtime_ns for p in (study.store / "metrics").rglob("*.parquet")} == files


def test_missing_jobs_are_left_out_then_filled_in(tmp_path, write_study):
    study = _study(tmp_path, write_study, distances=["mse"])
    protos, _ = _write_store(study.store)
    import zarr

    # un-mark one job, as if evolve had not finished it yet
    zarr.open_group(study.store / "arrays.zarr/runs/clrjit-s0/layer1", mode="r+")["done"][2, 1] = False
    analyze_prototypes(study)
    table = MetricsTable(study.store).read("analyze")
    assert not ((table.epoch == 2) & (table.repeat == 1)).any()
    assert not ((table.metric == "consistency_mse") & (table.epoch == 2)).any()
    zarr.open_group(study.store / "arrays.zarr/runs/clrjit-s0/layer1", mode="r+")["done"][2, 1] = True
    assert analyze_prototypes(study) == 1
    table = MetricsTable(study.store).read("analyze")
    assert ((table.metric == "consistency_mse") & (table.epoch == 2)).sum() == 1


def test_an_all_zero_stored_mask_is_reported_and_compared_unmasked(tmp_path, write_study):
    study = _study(tmp_path, write_study, distances=["mse"])
    protos, _ = _write_store(study.store, mask_epoch1=np.zeros((S, S), np.float32))
    analyze_prototypes(study)
    table = MetricsTable(study.store).read("analyze")
    fractions = table[table.metric == "masked_fraction"].set_index("epoch")["value"]
    assert fractions.to_dict() == {0: 1.0, 1: 0.0, 2: 1.0}
    v = [(protos[1, 0][u] / 255).ravel() for u in range(U)]
    want = np.mean([naive(v[i], v[j], "mse") for i in range(U) for j in range(U) if i < j])
    got = table[(table.metric == "diversity_mse") & (table.epoch == 1) & (table.repeat == 0)]["value"].item()
    assert got == pytest.approx(want, rel=1e-5) and got > 0


def test_silent_units_count_when_asked_to(tmp_path, write_study):
    study = _study(tmp_path, write_study, distances=["mse"], exclude_silent=False)
    protos, mask = _write_store(study.store)
    analyze_prototypes(study)
    table = MetricsTable(study.store).read("analyze")
    v = [(protos[2, 0][u] / 255 * mask[..., None]).ravel() for u in range(U)]
    want = np.mean([naive(v[i], v[j], "mse") for i in range(U) for j in range(U) if i < j])
    got = table[(table.metric == "diversity_mse") & (table.epoch == 2) & (table.repeat == 0)]["value"].item()
    assert got == pytest.approx(want, rel=1e-5)


def test_changing_the_masking_later_is_refused(tmp_path, write_study):
    from protoscope.errors import UserError

    study = _study(tmp_path, write_study)
    _write_store(study.store)
    analyze_prototypes(study)
    with pytest.raises(UserError, match="settings changed"):
        analyze_prototypes(_study(tmp_path, write_study, masked=False))


def test_masking_prototypes_evolved_without_receptive_fields_is_a_clear_error(tmp_path, write_study):
    from protoscope.errors import UserError

    study = _study(tmp_path, write_study)
    _write_store(study.store, rf="none")
    with pytest.raises(UserError, match="masked: false"):
        analyze_prototypes(study)


def test_the_command_computes_and_draws_and_says_what_is_missing(tmp_path, write_study, capsys):
    from protoscope.cli import main

    study = _study(tmp_path, write_study)
    path = tmp_path / "study.yaml"
    assert main(["analyze", str(path)]) == 2
    assert "protoscope evolve" in capsys.readouterr().err
    _write_store(study.store)
    assert main(["analyze", str(path)]) == 0
    printed = capsys.readouterr().out
    for name in ("prototype_diversity", "prototype_change", "prototype_consistency", "development_layer1"):
        assert name + ".png" in printed and (study.store / "figures" / f"{name}.pdf").is_file()
