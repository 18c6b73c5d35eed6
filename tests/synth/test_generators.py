"""Tests for protoscope.synth.generators: the shared contract and each prior."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn


from protoscope.errors import UserError
from protoscope.synth.generators import (
    GENERATORS,
    DeePSimFC6,
    FourierGenerator,
    Generator,
    ModuleGenerator,
    PixelGenerator,
    _normalise_keys,
    make_generator,
)


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class _Decoder(nn.Module):
    """A tiny user prior: 10-d latent -> 3x12x12 image in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(10, 3 * 12 * 12)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(z)).view(-1, 3, 12, 12)


def _small_generators() -> dict[str, Generator]:
    torch.manual_seed(0)
    return {
        "fourier96": FourierGenerator(),
        "fourier40-cut6": FourierGenerator(size=40, cutoff=6),
        "fourier33-nodecor": FourierGenerator(size=33, cutoff=5, decorrelate=False),
        "pixel": PixelGenerator(size=24),
        "pixel-lowres": PixelGenerator(size=96, latent_size=16),
        "module": ModuleGenerator(_Decoder(), latent_dim=10, output_range=(-1.0, 1.0)),
    }


GENS = _small_generators()


# ---------------------------------------------------------------- contract


@pytest.mark.parametrize("name", sorted(GENS))
@pytest.mark.parametrize("n", [1, 3, 8])
def test_output_shape_and_range(name: str, n: int) -> None:
    g = GENS[name]
    z = g.sample(n, _seeded(n)) * 3.0  # push towards saturation too
    with torch.no_grad():
        x = g(z)
    assert x.shape == (n, 3, g.image_size, g.image_size)
    assert torch.isfinite(x).all()
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert x.std() > 0.01  # not a constant image


@pytest.mark.parametrize("name", sorted(GENS))
def test_gradients_reach_the_latent(name: str) -> None:
    g = GENS[name]
    z = g.sample(2, _seeded(1)).requires_grad_(True)
    w = torch.randn(2, 3, g.image_size, g.image_size, generator=_seeded(2))
    (g(z) * w).sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    assert z.grad.abs().sum() > 0
    # Row i's gradient depends only on row i's image.
    z2 = z.detach().clone().requires_grad_(True)
    (g(z2)[0] * w[0]).sum().backward()
    assert torch.all(z2.grad[1] == 0)
    torch.testing.assert_close(z2.grad[0], z.grad[0])


@pytest.mark.parametrize("name", sorted(GENS))
def test_sample_is_deterministic_given_a_seed(name: str) -> None:
    g = GENS[name]
    a, b = g.sample(4, _seeded(7)), g.sample(4, _seeded(7))
    c = g.sample(4, _seeded(8))
    assert a.shape == (4, g.latent_dim) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert g.sample(0).shape == (0, g.latent_dim)


def test_sample_scale_and_device() -> None:
    g = PixelGenerator(size=32, init_std=0.25)
    z = g.sample(64, _seeded(0), device="cpu")
    assert z.device.type == "cpu"
    assert abs(z.std().item() - 0.25) < 0.01
    with pytest.raises(ValueError, match="n >= 0"):
        g.sample(-1)


@pytest.mark.parametrize("bad", [(4,), (2, 5), (2, 3, 4)])
def test_wrong_latent_shape_is_a_clear_error(bad: tuple[int, ...]) -> None:
    g = PixelGenerator(size=8, latent_size=2)  # latent_dim 12
    with pytest.raises(ValueError, match=r"\[n, 12\]"):
        g(torch.zeros(bad))
    with pytest.raises(ValueError, match="floating-point"):
        g(torch.zeros(1, 12, dtype=torch.int64))


# ---------------------------------------------------------------- Fourier


def _reference_latent_dim(cutoff: float) -> int:
    """Count unique non-Nyquist rfft2 bins with radius <= cutoff by brute force."""
    n = 0
    r = int(cutoff) + 1
    for ky in range(-r, r + 1):
        for kx in range(0, r + 1):
            if kx == 0 and ky < 0:
                continue
            if math.hypot(ky, kx) <= cutoff:
                n += 1
    return 3 * (2 * n - 1)


def test_fourier_latent_dim_follows_cutoff() -> None:
    dims = [FourierGenerator(size=96, cutoff=c).latent_dim for c in (0, 4, 8, 14, 16)]
    assert dims == [_reference_latent_dim(c) for c in (0, 4, 8, 14, 16)]
    assert dims == sorted(set(dims))  # strictly increasing
    assert dims[0] == 3  # DC only: one mean value per colour channel
    assert FourierGenerator().latent_dim == 1839  # the documented default
    assert 1000 <= FourierGenerator().latent_dim <= 3000
    # cycles per image: the latent size does not depend on the image size
    assert FourierGenerator(size=64).latent_dim == FourierGenerator(size=160).latent_dim
    with pytest.raises(ValueError, match="cutoff"):
        FourierGenerator(cutoff=-1)


def test_fourier_zero_latent_is_flat_grey() -> None:
    g = FourierGenerator(size=48, cutoff=10)
    x = g(torch.zeros(3, g.latent_dim))
    torch.testing.assert_close(x, torch.full_like(x, 0.5))


def test_fourier_every_latent_dimension_matters() -> None:
    g = FourierGenerator(size=40, cutoff=6)
    z = torch.zeros(1, g.latent_dim, requires_grad=True)
    w = torch.randn(1, 3, 40, 40, generator=_seeded(3))
    (g(z) * w).sum().backward()
    assert (z.grad.abs() > 1e-8).all()  # no dead (redundant) coefficients


def test_fourier_unit_latent_gives_unit_std_pixels() -> None:
    g = FourierGenerator(size=48, cutoff=12, decorrelate=False)
    z = torch.randn(128, g.latent_dim, generator=_seeded(4), dtype=torch.float64)
    pre = torch.logit(g(z))  # undo the sigmoid
    assert abs(pre.std().item() - 1.0) < 0.03


def test_fourier_vertical_frequency_is_a_clean_cosine() -> None:
    """One coefficient on the kx=0 axis must give a real cosine in y (Hermitian mirror)."""
    size = 32
    g = FourierGenerator(size=size, cutoff=4, decorrelate=False)
    # find the latent slot of (ky=3, kx=0) real part
    width = size // 2 + 1
    slot = (g.index == 3 * width).nonzero().item()
    z = torch.zeros(1, g.latent_dim, dtype=torch.float64)
    z[0, slot] = 1.0  # channel 0, real part
    pre = torch.logit(g(z))[0]
    y = torch.arange(size, dtype=torch.float64)
    expected = 2 * g.weight[slot].double() * torch.cos(2 * math.pi * 3 * y / size)
    torch.testing.assert_close(pre[0], expected[:, None].expand(size, size))
    torch.testing.assert_close(pre[1:], torch.zeros_like(pre[1:]))


def _radial_power(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean power per rfft2 bin and each bin's radius (cycles per image)."""
    size = x.shape[-1]
    spec = torch.fft.rfft2(x - x.mean(dim=(-2, -1), keepdim=True))
    power = (spec.abs() ** 2).mean(dim=(0, 1))
    ky = torch.fft.fftfreq(size, d=1.0 / size)
    kx = torch.fft.rfftfreq(size, d=1.0 / size)
    radius = torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    return power, radius


def test_fourier_power_spectrum_falls_with_frequency() -> None:
    g = FourierGenerator(size=96, cutoff=16)
    with torch.no_grad():
        x = g(g.sample(32, _seeded(5)))
    power, radius = _radial_power(x)
    bands = [(1, 3), (4, 7), (8, 13), (24, 40)]
    means = [power[(radius >= lo) & (radius < hi)].mean().item() for lo, hi in bands]
    assert means[0] > 2 * means[1] > 0
    assert means[1] > 2 * means[2] > 0
    # Above the cut-off only the sigmoid's weak harmonics remain.
    assert means[3] < 0.02 * means[2]
    # Before the sigmoid there is exactly nothing above the cut-off.
    pre = torch.logit(g(g.sample(4, _seeded(6)).double()))
    p_pre, r_pre = _radial_power(pre)
    assert p_pre[r_pre > 16.5].max() < 1e-12 * p_pre.max()


# ---------------------------------------------------------------- Pixel


def test_pixel_generator_latent_is_the_image() -> None:
    g = PixelGenerator(size=20)
    z = g.sample(2, _seeded(0))
    torch.testing.assert_close(g(z), torch.sigmoid(z.view(2, 3, 20, 20)))
    low = PixelGenerator(size=96, latent_size=16)
    assert low.latent_dim == 768 and low.image_size == 96
    flat = low(torch.full((1, 768), 2.0))
    torch.testing.assert_close(flat, torch.full_like(flat, torch.sigmoid(torch.tensor(2.0)).item()))
    with pytest.raises(ValueError, match="latent_size"):
        PixelGenerator(size=16, latent_size=32)


# ---------------------------------------------------------------- Module wrapper


def test_module_generator_maps_range_and_infers_size() -> None:
    dec = _Decoder()
    g = ModuleGenerator(dec, latent_dim=10, output_range=(-1.0, 1.0))
    assert g.image_size == 12
    z = g.sample(3, _seeded(0))
    torch.testing.assert_close(g(z), (dec(z) + 1) / 2)
    grey = ModuleGenerator(lambda z: z.view(-1, 1, 2, 2), latent_dim=4)
    out = grey(torch.tensor([[0.0, 0.5, 1.0, 2.0]]))
    assert out.shape == (1, 3, 2, 2)
    torch.testing.assert_close(out[0, 2].flatten(), torch.tensor([0.0, 0.5, 1.0, 1.0]))
    bad = ModuleGenerator(lambda z: z, latent_dim=4)
    with pytest.raises(UserError, match=r"\[n, 3, H, W\]"):
        bad(torch.zeros(2, 4))


# ---------------------------------------------------------------- make_generator


def test_make_generator_by_name() -> None:
    assert isinstance(make_generator("fourier", size=32, cutoff=4), FourierGenerator)
    assert isinstance(make_generator("Pixel", size=32, latent_size=8), PixelGenerator)
    assert set(GENERATORS) == {"fourier", "maco", "pixel", "deepsim-fc6"}


def test_make_generator_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(UserError) as info:
        make_generator("fourir")
    msg = str(info.value)
    assert "'fourir'" in msg and "Did you mean 'fourier'" in msg
    for valid in ("deepsim-fc6", "fourier", "pixel"):
        assert valid in msg
    with pytest.raises(UserError, match="no option 'cutof'.*cutoff"):
        make_generator("fourier", cutof=3)


# ---------------------------------------------------------------- DeePSim fc6


@pytest.fixture(scope="module")
def deepsim() -> DeePSimFC6:
    return DeePSimFC6(allow_random=True, seed=0, output_size=96)


@pytest.fixture(scope="module")
def deepsim_file(deepsim: DeePSimFC6, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("deepsim") / "fc6.safetensors"
    deepsim.save_weights(path)
    return path


def test_deepsim_random_init_needs_explicit_flag() -> None:
    with pytest.raises(UserError, match="weights_path"):
        DeePSimFC6()


def test_deepsim_forward_shape_range_and_gradient(deepsim: DeePSimFC6) -> None:
    assert deepsim.latent_dim == 4096 and deepsim.image_size == 96
    assert not any(p.requires_grad for p in deepsim.parameters())  # frozen prior
    z = deepsim.sample(2, _seeded(0)).requires_grad_(True)
    x = deepsim(z)
    assert x.shape == (2, 3, 96, 96)
    assert x.min() >= 0 and x.max() <= 1 and x.std() > 0.01
    (x * torch.randn(x.shape, generator=_seeded(1))).sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_deepsim_sample_scale(deepsim: DeePSimFC6) -> None:
    z = deepsim.sample(16, _seeded(0))
    assert z.shape == (16, 4096)
    assert abs(z.std().item() - 3.0) < 0.05


def test_deepsim_safetensors_round_trip_and_rgb_conversion(deepsim: DeePSimFC6, deepsim_file: Path) -> None:
    loaded = DeePSimFC6(deepsim_file, output_size=96)
    z = deepsim.sample(2, _seeded(3))
    with torch.no_grad():
        torch.testing.assert_close(loaded(z), deepsim(z), rtol=0, atol=0)
        full = DeePSimFC6(deepsim_file, output_size=256)
        raw = full.raw(z)
        assert raw.shape == (2, 3, 256, 256)
        # documented conversion: BGR -> RGB, + (123, 117, 104), clamp, / 255
        mean = torch.tensor([123.0, 117.0, 104.0]).view(1, 3, 1, 1)
        expected = (raw[:, [2, 1, 0]] + mean).clamp(0, 255) / 255
        torch.testing.assert_close(full(z), expected)
        # the comparison above is not vacuous: images vary with the latent
        assert (expected[0] - expected[1]).abs().mean() > 0.01


def test_deepsim_pt_state_dict_via_weights_only(deepsim: DeePSimFC6, tmp_path: Path) -> None:
    path = tmp_path / "fc6.pt"
    torch.save(deepsim.net.state_dict(), path)
    loaded = DeePSimFC6(path, output_size=96)
    z = deepsim.sample(1, _seeded(4))
    with torch.no_grad():
        torch.testing.assert_close(loaded(z), deepsim(z), rtol=0, atol=0)


def test_deepsim_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "fc6.safetensors"
    with pytest.raises(UserError) as info:
        DeePSimFC6(path)
    assert str(path) in str(info.value) and "weights_path" in str(info.value)


def test_deepsim_wrong_shapes_name_the_file_and_keys(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "wrong.safetensors"
    save_file({"defc7.weight": torch.zeros(8, 8), "defc7.bias": torch.zeros(4096)}, str(path))
    with pytest.raises(UserError) as info:
        DeePSimFC6(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "defc7.weight (8, 8) != (4096, 4096)" in msg
    assert "missing (e.g. defc6.weight" in msg


def test_deepsim_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(UserError, match="state dict"):
        DeePSimFC6(path)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"definitely not safetensors")
    with pytest.raises(UserError, match="junk.safetensors"):
        DeePSimFC6(junk)


class _Booby:
    """Unpickling this would run code (create a marker file)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (Path(self.marker),))


def test_deepsim_refuses_pickled_objects(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"defc7.weight": _Booby(str(marker))}, path)
    with pytest.raises(UserError) as info:
        DeePSimFC6(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_key_spellings_in_the_wild_are_normalised() -> None:
    expected = {"defc7.weight", "deconv5.bias"}
    t = torch.zeros(1)
    assert set(_normalise_keys({"G.defc7.weight": t, "G.deconv5.bias": t}, expected)) == expected
    assert set(_normalise_keys({"defc7.1.weight": t, "deconv5.1.bias": t}, expected)) == expected
    odd = {"foo.weight": t}
    assert _normalise_keys(odd, expected) == odd


# ---------------------------------------------------------------- maco and encoders


def _photos(n: int = 32, size: int = 32) -> torch.Tensor:
    from protoscope.data.datasets import labelled
    from protoscope.specs import DataSpec

    return labelled(DataSpec(name="shapes", image_size=size), "probe", n).images.float() / 255


def test_maco_fixes_the_amplitude_and_searches_the_phase() -> None:
    """Before its output curve, every rendering has exactly the photos' mean amplitude spectrum,
    whatever the latent: the search can move the phase only. (On the kx = 0 and Nyquist columns,
    whose coefficients pair with their own mirrors, `irfft2` keeps the Hermitian part: there the
    amplitude is at most the photos'.)"""
    from protoscope.synth.generators import MacoGenerator, magnitude_of

    photos = _photos()
    gen = MacoGenerator(32, images=photos)
    assert torch.allclose(gen.magnitude, magnitude_of(photos))
    for z in (gen.sample(4, _seeded(1)), 10 * torch.randn(4, gen.latent_dim, generator=_seeded(2))):
        centred = torch.atanh((2 * gen(z) - 1).clamp(-0.999999, 0.999999)) / 2  # undo the output curve
        decorrelated = torch.einsum("ij,njhw->nihw", torch.linalg.inv(gen.colour), centred)
        amplitude = torch.fft.rfft2(decorrelated, norm="ortho").abs()
        inside = (gen(z) > 1e-3).all() and (gen(z) < 1 - 1e-3).all()
        assert inside  # the curve is invertible on these renderings
        target = gen.magnitude.expand_as(amplitude)
        torch.testing.assert_close(amplitude[..., 1:-1], target[..., 1:-1], rtol=1e-3, atol=1e-3)
        assert (amplitude[..., [0, -1]] <= target[..., [0, -1]] * 1.001 + 1e-4).all()
    a, b = gen(gen.sample(2, _seeded(3)))
    assert (a - b).abs().mean() > 0.01  # other phases, another image
    with pytest.raises(ValueError, match="amplitude spectrum"):
        MacoGenerator(32)


@pytest.mark.parametrize("name", ["fourier", "pixel", "maco"])
def test_an_encoded_photo_renders_near_itself(name: str) -> None:
    """`encode` inverts `render` as far as the prior allows: exactly (pixel), the low-pass part
    (fourier, cutoff 12) or the layout at the mean amplitude (maco: only further than a random
    latent's rendering)."""
    photos = _photos(8)
    gen = {"fourier": FourierGenerator(32, cutoff=12), "pixel": PixelGenerator(32),
           "maco": make_generator("maco", size=32, images=_photos(64))}[name]
    error = (gen(gen.encode(photos)) - photos).abs().mean()
    random = (gen(gen.sample(8, _seeded(0))) - photos).abs().mean()
    limit = {"pixel": 1e-4, "fourier": 0.02, "maco": 0.8 * random}[name]
    assert error < limit, (name, error, random)


def test_a_prior_without_an_encoder_refuses_natural_starts() -> None:
    from protoscope.synth.layer import natural_starts

    with pytest.raises(UserError, match="natural_starts: 0"):
        natural_starts(ModuleGenerator(_Decoder(), latent_dim=10, output_range=(-1.0, 1.0)), _photos(2, 12), 2)
    assert natural_starts(PixelGenerator(16), _photos(3), 0) is None
    assert natural_starts(PixelGenerator(16), (_photos(3) * 255).to(torch.uint8), 2).shape == (2, 3 * 16 * 16)
