"""Activation atlases: grid averaging, whitening, empty cells, seeded and shared UMAP layouts."""

import numpy as np
import pytest
import torch

from protoscope.analyze.atlas import (
    aligned_layout, grid_average, grid_cells, normalize_layout, sample_activations, sample_positions, shared_layout,
    umap_layout, whiten,
)
from protoscope.synth.objectives import DirectionCosine


def test_grid_cells_are_row_major_with_the_edge_in_the_last_cell():
    xy = np.array([[0.0, 0.0], [0.99, 0.0], [0.0, 0.5], [1.0, 1.0], [0.34, 0.66]])
    assert grid_cells(xy, 3).tolist() == [0, 2, 3, 8, 1 + 3 * 1]


def test_grid_average_by_hand():
    """Four points in cell 0, two in cell 3 (too few), none elsewhere: one mean, the rest empty."""
    xy = np.array([[0.1, 0.1], [0.2, 0.3], [0.4, 0.1], [0.05, 0.45], [0.9, 0.9], [0.8, 0.6]])
    acts = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [7.0, 6.0], [100.0, 100.0], [50.0, 0.0]])
    grid = grid_average(xy, acts, grid=2, min_count=3)
    assert grid.counts.tolist() == [4, 0, 0, 2]
    np.testing.assert_allclose(grid.means[0], [4.0, 3.0])
    assert np.isnan(grid.means[1:]).all()
    assert grid.filled.tolist() == [True, False, False, False]
    grid = grid_average(xy, acts, grid=2, min_count=2)
    np.testing.assert_allclose(grid.means[3], [75.0, 50.0])


def test_whitening_by_the_uncentred_covariance():
    """Closed form: A = diag-scaled axes gives AᵀA/N = diag(s²), so whitening divides by s²."""
    acts = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 0.5], [0.0, -0.5]])  # AᵀA/N = diag(2, 0.125)
    np.testing.assert_allclose(whiten(np.array([[1.0, 1.0]]), acts), [[0.5, 8.0]])
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 4)) @ rng.normal(size=(4, 4))
    means = rng.normal(size=(3, 4))
    np.testing.assert_allclose(whiten(means, a) @ (a.T @ a / len(a)), means, atol=1e-9)


def test_whitening_survives_a_dead_unit():
    acts = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    out = whiten(np.array([[1.0, 0.0]]), acts)
    assert np.isfinite(out).all() and out[0, 1] == 0.0


def test_layout_is_clipped_to_its_percentiles_and_rescaled():
    layout = np.concatenate([np.linspace(0, 1, 998)[:, None].repeat(2, 1), [[-50.0, -50.0], [80.0, 80.0]]])
    xy = normalize_layout(layout)
    assert xy.min() == 0.0 and xy.max() == 1.0 and xy[-2:].tolist() == [[0.0, 0.0], [1.0, 1.0]]
    assert xy[499, 0] == pytest.approx(0.5, abs=0.01)  # the outliers do not squeeze the bulk


def test_positions_depend_on_the_seed_only_and_sampling_picks_them():
    ys, xs = sample_positions(5, 4, 6, seed=3)
    ys2, xs2 = sample_positions(5, 4, 6, seed=3)
    assert ys.tolist() == ys2.tolist() and xs.tolist() == xs2.tolist()
    assert ys.max() < 4 and xs.max() < 6
    acts = np.arange(5 * 2 * 4 * 6, dtype=float).reshape(5, 2, 4, 6)
    picked = sample_activations(acts, ys, xs)
    assert picked.shape == (5, 2)
    assert all(picked[i, c] == acts[i, c, ys[i], xs[i]] for i in range(5) for c in range(2))


def _clusters(seed=0, per=60, dim=12):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, dim)) * 4
    return np.concatenate([c + rng.normal(size=(per, dim)) for c in centres]), np.repeat(np.arange(3), per)


def test_umap_is_seeded_and_separates_clusters():
    acts, labels = _clusters()
    a, b = umap_layout(acts, n_neighbors=15, seed=1), umap_layout(acts, n_neighbors=15, seed=1)
    np.testing.assert_array_equal(a, b)
    centres = np.array([a[labels == k].mean(0) for k in range(3)])
    spread = max(np.linalg.norm(a[labels == k] - centres[k], axis=1).mean() for k in range(3))
    gaps = min(np.linalg.norm(centres[i] - centres[j]) for i in range(3) for j in range(i))
    assert gaps > 2 * spread


def test_a_shared_layout_puts_the_same_activations_in_the_same_cells_at_two_epochs():
    acts, _ = _clusters(per=50)
    rng = np.random.default_rng(1)
    later = acts[rng.permutation(len(acts))[:100]]  # epoch 2 repeats 100 of epoch 1's activations
    first, second = shared_layout([acts, later], n_neighbors=15, seed=0)
    assert first.shape == (150, 2) and second.shape == (100, 2)
    index = {row.tobytes(): k for k, row in enumerate(acts)}
    same = [index[row.tobytes()] for row in later]
    agree = (grid_cells(first[same], 6) == grid_cells(second, 6)).mean()
    assert agree > 0.9


def test_an_aligned_layout_is_seeded_and_keeps_an_unchanged_epoch_in_its_cells():
    acts, labels = _clusters(per=50)
    rng = np.random.default_rng(2)
    drifted = acts + 0.3 * rng.standard_normal(acts.shape)  # epoch 2: the same images, moved a little
    first, second, third = aligned_layout([acts, acts, drifted], n_neighbors=15, seed=0)
    again = aligned_layout([acts, acts, drifted], n_neighbors=15, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip((first, second, third), again))
    assert (grid_cells(first, 6) == grid_cells(second, 6)).mean() > 0.8  # unchanged: the same cells
    centres = np.array([second[labels == k].mean(0) for k in range(3)])
    assert all(np.linalg.norm(third[labels == k].mean(0) - centres[k]) < np.linalg.norm(
        third[labels == k].mean(0) - centres[j]) for k in range(3) for j in range(3) if j != k)  # clusters stay put
    with pytest.raises(ValueError, match="same images"):
        aligned_layout([acts, acts[:10]])


def test_direction_cosine_value_and_gradient_against_a_direct_computation():
    torch.manual_seed(0)
    v = torch.randn(3, 5)
    acts = torch.randn(3, 5, 4, 4, requires_grad=True)
    objective = DirectionCosine(v, position="centre", power=2)
    scores = objective(acts)
    a = acts[:, :, 1, 1]
    dot = (a * v).sum(1)
    cos = dot / (a.norm(dim=1) * v.norm(dim=1))
    direct = dot * torch.clamp(cos, min=0.1) ** 2
    torch.testing.assert_close(scores, direct)
    (grad,) = torch.autograd.grad(scores.sum(), acts)
    (direct_grad,) = torch.autograd.grad(direct.sum(), acts)
    torch.testing.assert_close(grad, direct_grad)
    assert torch.count_nonzero(grad[:, :, 0, 0]) == 0  # only the centre position is read
    all_pairs = objective.score_all(acts.detach())
    torch.testing.assert_close(torch.diagonal(all_pairs), scores.detach())
    floor = DirectionCosine(torch.tensor([[1.0, 0.0]]), power=4)(torch.tensor([[1.0, 10.0]]))
    torch.testing.assert_close(floor, torch.tensor([1.0 * 0.1 ** 4]))  # a wide angle hits the 0.1 floor
