"""Tuning curves against known answers: a hand-set Gabor and colour-opponent filter give their own
orientation, frequency and hue; a unit that reads luminance only is colour-blind; and the indices
equal independent computations (scipy) on the same curves."""

import math

import numpy as np
import pytest
import torch
from scipy import signal, stats

from protoscope.analyze.tuning import (RGB_TO_YIQ, Curves, circular, colour_selectivity, indices, make_stimuli,
                                       measure, painted)
from protoscope.specs import TuningSpec

SIZE = 32


def _probe(n=24, seed=0) -> torch.Tensor:
    """Smooth coloured blobs: images with many hues and luminances."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(n, 3, 4, 4, generator=g)
    return torch.nn.functional.interpolate(small, size=SIZE, mode="bilinear", align_corners=False)


def _centre_reader(weight: torch.Tensor, rectify: bool = True):
    """A one-layer 'network': conv with `weight` (units, 3, k, k), read at the centre cell."""
    def read(images):
        out = torch.nn.functional.conv2d(images - 0.5, weight, padding=weight.shape[-1] // 2)
        out = out.relu() if rectify else out
        return out[:, :, SIZE // 2, SIZE // 2]
    return read


def _gabor(orientation_deg: float, cycles_per_image: float, k: int = 31) -> torch.Tensor:
    """An even Gabor on the image's own axes (x right, y up), written here independently."""
    half = k // 2
    rows, cols = torch.meshgrid(torch.arange(k, dtype=torch.float64), torch.arange(k, dtype=torch.float64), indexing="ij")
    x, y = (cols - half) / SIZE, (half - rows) / SIZE
    t = math.radians(orientation_deg)
    carrier = torch.cos(2 * math.pi * cycles_per_image * (x * math.cos(t) + y * math.sin(t)))
    envelope = torch.exp(-(x ** 2 + y ** 2) / (2 * (1.2 / cycles_per_image) ** 2))
    return (carrier * envelope).float() * RGB_TO_YIQ[0].view(3, 1, 1)  # it reads luminance (Y) only


def test_a_gabor_unit_prefers_its_own_orientation_and_frequency():
    spec = TuningSpec(images=8, shuffles=2)
    stimuli = make_stimuli(_probe(), SIZE, spec)
    wanted = [(0.0, 4.0), (45.0, 4.0), (90.0, 8.0), (135.0, 2.0)]
    weight = torch.stack([_gabor(o, f) for o, f in wanted])
    found = indices(measure(_centre_reader(weight), stimuli), stimuli, spec.shuffles)
    for u, (orientation, frequency) in enumerate(wanted):
        gap = abs((found["preferred_orientation"][u] - orientation + 90) % 180 - 90)
        assert gap < 5, (u, found["preferred_orientation"][u])
        nearest = stimuli.frequencies[np.argmin(abs(np.log2(stimuli.frequencies / frequency)))]
        assert found["preferred_frequency"][u] == nearest
        assert found["orientation_selectivity"][u] > 0.5
        assert found["colour_selectivity"][u] < 1e-6  # luminance filters: no hue preference


def test_a_colour_opponent_unit_prefers_its_hue_and_a_luminance_unit_is_colour_blind():
    spec = TuningSpec(images=24, shuffles=20)
    stimuli = make_stimuli(_probe(), SIZE, spec)
    # units: +I (orange-red) opponent, +Q opponent, -Q opponent, and luminance Y: 1x1 convs in YIQ
    rows = torch.stack([RGB_TO_YIQ[1], RGB_TO_YIQ[2], -RGB_TO_YIQ[2], RGB_TO_YIQ[0]])
    weight = rows.view(4, 3, 1, 1)
    found = indices(measure(_centre_reader(weight, rectify=False), stimuli), stimuli, spec.shuffles)
    for u, hue in enumerate([0.0, 90.0, 270.0]):
        assert abs((found["preferred_hue"][u] - hue + 180) % 360 - 180) < 3, found["preferred_hue"][u]
        assert found["colour_selectivity"][u] > 10 * found["colour_selectivity_chance"][u]
    assert found["colour_selectivity"][3] < 1e-6  # no hue explains any of its variance ...
    assert found["colour_selectivity_chance"][3] < 1e-6  # ... as with the hues shuffled: chance


def test_painting_keeps_luminance_and_never_clips():
    images = _probe()
    hues = np.arange(12) * 30.0
    out = painted(images, hues)
    y = torch.einsum("j,hnjxy->hnxy", RGB_TO_YIQ[0], out)
    assert torch.allclose(y, y[0].expand_as(y), atol=1e-5)  # the same luminance at every hue
    assert torch.allclose(y[0], torch.einsum("j,njxy->nxy", RGB_TO_YIQ[0], images), atol=1e-5)
    chroma = torch.einsum("ij,hnjxy->hnixy", RGB_TO_YIQ[1:], out).norm(dim=2)
    assert torch.allclose(chroma, chroma[0].expand_as(chroma), atol=1e-4)  # no step was clipped
    assert chroma.mean() > 0.02  # and colour is left


def test_the_indices_equal_independent_computations():
    rng = np.random.default_rng(1)
    hues, images, units = 12, 10, 5
    hue = rng.normal(size=(hues, images, units)) + rng.normal(size=(hues, 1, units))
    for u in range(units):  # η² from scipy's one-way ANOVA: F (k - 1) / (F (k - 1) + N - k)
        f, _ = stats.f_oneway(*[hue[h, :, u] for h in range(hues)])
        eta = f * (hues - 1) / (f * (hues - 1) + hues * images - hues)
        assert colour_selectivity(hue)[u] == pytest.approx(eta, rel=1e-9)
    angles = np.arange(8) * 22.5
    curve = rng.integers(0, 6, size=(8, units)).astype(float)  # integer rates: repeat each angle that often
    preferred, strength = circular(curve, angles, 180.0)
    for u in range(units):
        doubled = np.repeat(np.radians(2 * angles), curve[:, u].astype(int))
        assert strength[u] == pytest.approx(1 - stats.circvar(doubled), abs=1e-9)
        assert preferred[u] == pytest.approx(np.degrees(stats.circmean(doubled)) / 2, abs=1e-6)


def test_the_bandwidth_is_scipys_half_height_width():
    stimuli = make_stimuli(_probe(8), SIZE, TuningSpec(images=4, frequencies=9))
    octaves = np.log2(stimuli.frequencies)
    step = octaves[1] - octaves[0]
    for centre, width in [(4, 1.3), (3, 0.8), (5, 2.0)]:
        curve = np.exp(-((np.arange(9) - centre) * step) ** 2 / (2 * (width / 2.355) ** 2))
        grating = np.zeros((1, 1, 9, 1))
        grating[0, 0, :, 0] = curve
        found = indices(Curves(np.zeros((12, 2, 1)), grating), stimuli, 1)["frequency_bandwidth"][0]
        # half the peak's height: scipy's width with the prominence taken as the peak itself
        widths = signal.peak_widths(curve, [centre], rel_height=0.5,
                                    prominence_data=(curve[[centre]], np.array([0]), np.array([8])))[0][0] * step
        assert found == pytest.approx(widths, rel=1e-6)
