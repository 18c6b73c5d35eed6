"""Tests for protoscope.synth.objectives: batched scores against loop references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch


from protoscope.synth.objectives import (
    ChannelCentre,
    ChannelMean,
    Direction,
    LinearCombination,
    Neuron,
    as_units,
    centre_index,
    gather_units,
)

UNITS = [3, 0, 6, 6, 1]


def _acts(h: int = 5, w: int = 5, b: int = 5, c: int = 7, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("hw", [(5, 5), (4, 4), (6, 3), (1, 1)])
def test_channel_centre_matches_hand_indexing(hw: tuple[int, int]) -> None:
    h, w = hw
    acts = _acts(h, w)
    ref = torch.stack([acts[i, u, (h - 1) // 2, (w - 1) // 2] for i, u in enumerate(UNITS)])
    torch.testing.assert_close(ChannelCentre(UNITS)(acts), ref, rtol=0, atol=0)


def test_centre_of_even_map_is_upper_left_of_the_middle_four() -> None:
    assert centre_index(4, 4) == (1, 1)
    assert centre_index(7, 7) == (3, 3)
    acts = torch.zeros(1, 2, 4, 4)
    acts[0, 1, 1, 1] = 5.0
    acts[0, 1, 2, 2] = -9.0
    assert ChannelCentre([1])(acts).item() == 5.0


@pytest.mark.parametrize("hw", [(5, 5), (4, 6)])
def test_channel_mean_matches_mean_over_space(hw: tuple[int, int]) -> None:
    acts = _acts(*hw)
    ref = acts.mean(dim=(2, 3))[torch.arange(5), torch.tensor(UNITS)]
    torch.testing.assert_close(ChannelMean(UNITS)(acts), ref)
    loop = torch.stack([acts[i, u].mean() for i, u in enumerate(UNITS)])
    torch.testing.assert_close(ChannelMean(UNITS)(acts), loop)


def test_neuron_on_fc_and_flattened_activations() -> None:
    fc = torch.randn(5, 11)
    torch.testing.assert_close(Neuron(UNITS)(fc), torch.stack([fc[i, u] for i, u in enumerate(UNITS)]))
    conv = _acts(3, 3)
    flat_units = [0, 62, 10, 9 * 2 + 4, 5]
    torch.testing.assert_close(
        Neuron(flat_units)(conv), torch.stack([conv[i].flatten()[u] for i, u in enumerate(flat_units)])
    )
    assert Neuron([62])(conv[:1]).item() == conv[0, 6, 2, 2].item()


@pytest.mark.parametrize("position", ["mean", "centre"])
def test_direction_matches_einsum(position: str) -> None:
    acts = _acts(6, 6)
    d = torch.randn(5, 7, generator=torch.Generator().manual_seed(1))
    if position == "mean":
        ref = torch.einsum("bchw,bc->b", acts, d) / 36
    else:
        ref = torch.einsum("bc,bc->b", acts[:, :, 2, 2], d)
    torch.testing.assert_close(Direction(d, position=position)(acts), ref)
    fc = torch.randn(5, 7)
    torch.testing.assert_close(Direction(d)(fc), torch.einsum("bc,bc->b", fc, d))
    with pytest.raises(ValueError, match="7-d directions but the layer has 9"):
        Direction(d)(torch.randn(5, 9, 2, 2))
    with pytest.raises(ValueError, match="position"):
        Direction(d, position="max")  # type: ignore[arg-type]


def test_one_hot_direction_equals_channel_objectives() -> None:
    acts = _acts(5, 5)
    onehot = torch.nn.functional.one_hot(torch.tensor(UNITS), 7).float()
    torch.testing.assert_close(Direction(onehot, "centre")(acts), ChannelCentre(UNITS)(acts))
    torch.testing.assert_close(Direction(onehot, "mean")(acts), ChannelMean(UNITS)(acts))


def test_combinations_equal_combined_scores() -> None:
    acts = _acts(5, 5)
    a, b = ChannelCentre(UNITS), ChannelMean(UNITS)
    sa, sb = a(acts), b(acts)
    torch.testing.assert_close((a + 2 * b)(acts), sa + 2 * sb)
    torch.testing.assert_close((a * 2.0 - b / 4)(acts), 2 * sa - sb / 4)
    torch.testing.assert_close((-a)(acts), -sa)
    torch.testing.assert_close((1.5 - a)(acts), 1.5 - sa)
    torch.testing.assert_close(sum([a, b, a])(acts), 2 * sa + sb)
    torch.testing.assert_close((3 * (a - b))(acts), 3 * sa - 3 * sb)
    assert isinstance(a + b, LinearCombination) and (a + b).rows == 5


def test_descriptions_are_readable() -> None:
    a, b = ChannelCentre([0, 1]), ChannelMean([0, 1])
    assert repr(a) == "ChannelCentre(units=[0, 1])"
    assert (a + 2 * b).describe() == "ChannelCentre(units=[0, 1]) + 2 * ChannelMean(units=[0, 1])"
    assert (a - 0.5 * b).describe() == "ChannelCentre(units=[0, 1]) - 0.5 * ChannelMean(units=[0, 1])"
    assert (-a).describe() == "-ChannelCentre(units=[0, 1])"
    assert (a + 1).describe() == "ChannelCentre(units=[0, 1]) + 1"
    assert "... 94 more" in ChannelMean(range(100)).describe()
    assert Direction(torch.zeros(3, 8), "centre").describe() == "Direction(rows=3, dim=8, position='centre')"


def test_row_count_mismatch_raises() -> None:
    obj = ChannelCentre(UNITS)
    with pytest.raises(ValueError, match=r"expects 5 rows .* activations have 4"):
        obj(_acts(b=4))
    with pytest.raises(ValueError, match="expects 5 rows"):
        (obj + ChannelMean(UNITS))(_acts(b=6))
    with pytest.raises(ValueError, match="different row counts"):
        obj + ChannelMean([0, 1])
    with pytest.raises(ValueError, match="expects 3 rows"):
        Direction(torch.zeros(3, 7))(_acts(b=5))


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="out of range for 7 channels"):
        ChannelMean([0, 7])(_acts(b=2))
    with pytest.raises(ValueError, match="use Neuron"):
        ChannelCentre([0, 1])(torch.randn(2, 7))
    with pytest.raises(ValueError, match="integers"):
        as_units([0.5, 1.0])
    with pytest.raises(ValueError, match="1-D"):
        as_units([[0, 1]])
    with pytest.raises(ValueError, match="non-negative"):
        as_units([0, -2])
    with pytest.raises(ValueError, match="empty"):
        as_units([])
    with pytest.raises(TypeError):
        ChannelMean([0]) * ChannelMean([0])  # type: ignore[operator]
    assert as_units(np.array([2, 1])).tolist() == [2, 1]


def test_select_restricts_rows_for_chunking() -> None:
    acts = _acts(5, 5)
    d = torch.randn(5, 7)
    obj = ChannelCentre(UNITS) - 0.3 * ChannelMean(UNITS) + Direction(d, "mean")
    rows = [4, 1]
    torch.testing.assert_close(obj.select(rows)(acts[rows]), obj(acts)[rows])
    part = obj.select(slice(0, 3))
    assert part.rows == 3
    torch.testing.assert_close(part(acts[:3]), obj(acts)[:3])


def test_gather_units_is_one_vectorized_lookup() -> None:
    acts = _acts(4, 4, b=64, c=32).requires_grad_(True)
    units = torch.randint(0, 32, (64,), generator=torch.Generator().manual_seed(2))
    maps = gather_units(acts, units)
    assert maps.shape == (64, 4, 4)
    torch.testing.assert_close(maps, torch.stack([acts[i, u] for i, u in enumerate(units.tolist())]))
    gather_units(acts, units, "centre").sum().backward()
    # exactly one activation per row receives gradient
    assert int((acts.grad != 0).sum()) == 64
    with pytest.raises(ValueError, match="units"):
        gather_units(acts, units[:3])


@pytest.mark.parametrize(
    "make",
    [
        lambda: ChannelCentre([3, 0, 5]),
        lambda: ChannelMean([1, 1, 2]),
        lambda: Direction(torch.randn(3, 6), "centre"),
        lambda: Direction(torch.randn(3, 6), "mean"),
        lambda: ChannelCentre([0, 1, 2]) - 0.5 * ChannelMean([2, 2, 4]),
    ],
)
def test_score_all_matches_scoring_each_image_for_each_row(make):
    """score_all(acts)[b, r] is what row r's objective gives image b."""
    torch.manual_seed(0)
    obj = make()
    acts = torch.randn(5, 6, 7, 4)
    everything = obj.score_all(acts)
    assert everything.shape == (5, obj.rows)
    for b in range(5):
        tiled = acts[b : b + 1].expand(obj.rows, -1, -1, -1)
        assert torch.allclose(everything[b], obj(tiled), atol=1e-6)


def test_a_channel_centre_reads_the_cell_it_is_given():
    acts = torch.randn(3, 5, 4, 4)
    at = ChannelCentre([0, 4, 2], at=(2, 1))
    assert torch.equal(at(acts), acts[torch.arange(3), torch.tensor([0, 4, 2]), 2, 1])
    assert torch.equal(at.score_all(acts), acts[:, [0, 4, 2], 2, 1])
    assert at.select([2]).at == (2, 1) and torch.equal(at.select([2])(acts[2:]), acts[2:, 2, 2, 1])
    assert not torch.equal(at(acts), ChannelCentre([0, 4, 2])(acts))  # the middle cell is (1, 1)
    with pytest.raises(ValueError, match="outside the 4x4 map"):
        ChannelCentre([0, 1, 2], at=(4, 0))(acts)
