"""The hybrid engine on small nets: shapes, determinism, silent units, the CMA rescue, precision."""

from dataclasses import replace

import pytest
import torch
from torch import nn

from protoscope.nets.models import build_model
from protoscope.synth.engine import EngineConfig, activation_bytes_per_image, pick_batch_size, synthesize
from protoscope.synth.generators import FourierGenerator, Generator, PixelGenerator
from protoscope.synth.layer import layer_forward, pre_activation
from protoscope.synth.objectives import ChannelCentre, ChannelMean

FAST = EngineConfig(pool_size=64, cma_generations=3, adam_steps=15, adam_lr=0.1, batch_size=64)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return build_model("resnet18", width=0.0625, small_input=True).eval()


def test_shapes_dtypes_and_adam_improves(net):
    forward, _ = layer_forward(net, "layer2", 16, crop=False)
    gen = FourierGenerator(size=16, cutoff=6)
    units = 8
    out = synthesize(forward, gen, ChannelCentre(range(units)), seed=0, config=FAST)
    assert out.images.shape == (units, 16, 16, 3) and out.images.dtype == torch.uint8
    assert out.score.shape == (units,) and out.score.dtype == torch.float32
    assert out.latent.shape == (units, gen.latent_dim) and out.trace.shape == (units, FAST.adam_steps)
    assert out.silent.dtype == torch.bool
    start = out.trace[:, 0]
    assert (out.score >= start - 1e-4).all()  # the best latent is kept, never a worse one
    assert out.score.mean() > 1.2 * start.mean()  # Adam made real progress
    # the stored image really evokes the stored score
    images = out.images.permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        again = ChannelCentre(range(units))(forward(images))
    assert torch.allclose(again, out.score, rtol=0.05, atol=0.05)  # up to uint8 rounding


def test_deterministic_for_a_seed(net):
    forward, _ = layer_forward(net, "layer1", 16, crop=False)
    gen = FourierGenerator(size=16, cutoff=6)
    a = synthesize(forward, gen, ChannelMean(range(4)), seed=3, config=FAST)
    b = synthesize(forward, gen, ChannelMean(range(4)), seed=3, config=FAST)
    c = synthesize(forward, gen, ChannelMean(range(4)), seed=4, config=FAST)
    assert torch.equal(a.latent, b.latent) and torch.equal(a.images, b.images) and torch.equal(a.score, b.score)
    assert not torch.equal(a.latent, c.latent)


class _Thresholds(nn.Module):
    """Unit k = relu(red at the centre - t_k): dead (t > 1), rare (t just below 1) or easy (t = 0)."""

    def __init__(self, thresholds):
        super().__init__()
        self.t = torch.tensor(thresholds)

    def forward(self, images):
        red = images[:, 0:1, 1:2, 1:2]  # (B, 1, 1, 1): centre of a 4x4 image at ((4-1)//2)
        return torch.relu(red - self.t.view(1, -1, 1, 1))


def test_silent_units_are_reported_and_cma_rescues_rare_ones():
    gen = PixelGenerator(size=4, latent_size=4)
    model = _Thresholds([1.5, 0.9, 0.0])  # dead, rare (1.4% of random images), easy
    config = EngineConfig(pool_size=8, cma_generations=30, cma_popsize=16, adam_steps=5, batch_size=64)
    out = synthesize(model, gen, ChannelCentre([0, 1, 2]), seed=1, config=config)
    assert out.stats["silent_after_pool"] == 2  # the pool missed both the dead and the rare unit
    assert out.stats["cma_units"] == 2
    assert out.silent.tolist() == [True, False, False]  # CMA found the rare one; the dead one stays silent
    assert out.score[0] == 0 and out.score[1] > 0
    no_cma = synthesize(model, gen, ChannelCentre([0, 1, 2]), seed=1, config=EngineConfig(
        pool_size=8, cma_generations=0, adam_steps=5, batch_size=64))
    assert no_cma.silent.tolist() == [True, True, False]  # without the search phase it would be lost
    # a silent unit has an all-zero gradient: it leaves Adam after its first step instead of idling
    assert not torch.isnan(out.trace[0, 0]) and torch.isnan(out.trace[0, 1:]).all()
    assert not torch.isnan(out.trace[2]).any()


def test_early_exit_drops_converged_units(net):
    forward, _ = layer_forward(net, "layer1", 16, crop=False)
    gen = FourierGenerator(size=16, cutoff=6)
    config = EngineConfig(pool_size=32, cma_generations=0, adam_steps=40, adam_lr=0.1, patience=2, tol=0.5, batch_size=64)
    out = synthesize(forward, gen, ChannelCentre(range(4)), seed=0, config=config)
    assert out.stats["adam_images"] < 4 * 40  # some units left early
    assert torch.isnan(out.trace[:, -1]).any()


class _Line(Generator):
    """A 1-d latent drawn as a flat 1x1 image: the engine's search on a number line."""

    latent_dim, image_size, init_std = 1, 1, 1.0

    def render(self, z):
        return z.view(-1, 1, 1, 1).expand(-1, 3, 1, 1)


class _Bumps(nn.Module):
    """Unit k = relu(1 - (x - c_k)²): one peak of height 1 at c_k, narrower than the first Adam step."""

    def __init__(self, centres):
        super().__init__()
        self.c = torch.tensor(centres)

    def forward(self, images):
        return torch.relu(1 - (images[:, :1] - self.c.view(1, -1, 1, 1)) ** 2)


def test_backtracking_climbs_peaks_that_the_first_step_overshoots():
    centres = torch.linspace(-1, 1, 16).tolist()
    config = EngineConfig(pool_size=4, cma_generations=0, adam_steps=20, adam_betas=(0.9, 0.999), patience=6,
                          backtrack=True, batch_size=64)  # backtracking is off by default
    out = synthesize(_Bumps(centres), _Line(), ChannelCentre(range(16)), seed=0, config=config)
    # Adam's first step moves the latent by lr * init_std = 2, past every peak of half-width 1
    assert (out.trace[:, 1] < out.trace[:, 0]).all()
    assert out.score.min() > 0.99  # yet every unit reaches its peak
    assert torch.allclose(out.latent.flatten(), torch.tensor(centres), atol=0.1)
    plain = synthesize(_Bumps(centres), _Line(), ChannelCentre(range(16)), seed=0,
                       config=replace(config, backtrack=False))
    # without backtracking the units stay where the pool put them (the first step overshot)
    assert torch.equal(plain.score, plain.trace[:, 0]) and plain.score.mean() < out.score.mean() - 0.05


@pytest.mark.parametrize("layer", ["layer1", "layer2"])
def test_cropped_forward_equals_full_for_the_centre_unit(net, layer):
    full, _ = layer_forward(net, layer, 32, crop=False)
    cropped, plan = layer_forward(net, layer, 32, crop=True)
    assert plan is not None and plan.fraction < 1
    images = torch.rand(6, 3, 32, 32)
    at_cell, in_crop = ChannelCentre(range(4), at=plan.full_centre), ChannelCentre(range(4))
    with torch.no_grad():
        assert torch.allclose(at_cell.score_all(full(images)), in_crop.score_all(cropped(images)), atol=1e-5)


def test_bf16_reaches_a_similar_activation(net):
    forward, _ = layer_forward(net, "layer2", 16, crop=False)
    gen = FourierGenerator(size=16, cutoff=6)
    fp32 = synthesize(forward, gen, ChannelCentre(range(8)), seed=0, config=FAST, bf16=False)
    bf16 = synthesize(forward, gen, ChannelCentre(range(8)), seed=0, config=FAST, bf16=True)
    assert bf16.score.mean() == pytest.approx(fp32.score.mean().item(), rel=0.15)
    assert bf16.score.dtype == torch.float32  # reported scores are float32 either way


def test_batch_size_follows_the_memory_budget(net):
    forward, _ = layer_forward(net, "layer2", 32, crop=False)
    gen = FourierGenerator(size=32, cutoff=6)
    per_image = activation_bytes_per_image(forward, gen, torch.device("cpu"), False)
    assert per_image > 3 * 32 * 32 * 4  # at least the input image is kept for backward
    cpu = torch.device("cpu")
    small = pick_batch_size(EngineConfig(memory_gb=0.01), forward, gen, cpu, False)
    large = pick_batch_size(EngineConfig(memory_gb=1.0, cpu_batch_size=4096), forward, gen, cpu, False)
    assert small < large
    assert pick_batch_size(EngineConfig(memory_gb=1.0), forward, gen, cpu, False) == EngineConfig().cpu_batch_size


class _Unreachable(nn.Module):
    """Unit 0 = relu(mean red at the centre 2x2 - 0.97), behind an nn.ReLU module.

    Random images essentially never get there (it needs four sigmoid pixels above
    0.97 at once), so every pool image and every CMA candidate scores 0 after the
    ReLU; the pre-activation still says which image came closer."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Sequential(nn.Identity(), nn.ReLU())

    def forward(self, images):
        red = images[:, 0:1, 1:3, 1:3].mean(dim=(2, 3), keepdim=True)  # (B, 1, 1, 1)
        return self.layer(red - 0.97)


def test_pre_activation_gives_the_search_a_signal_where_the_relu_gives_none():
    gen = PixelGenerator(size=4, latent_size=4)
    model = _Unreachable()
    forward = model.forward
    search = pre_activation(model, "layer", forward, 4)
    assert search is not None
    images = torch.rand(5, 3, 4, 4)
    assert torch.allclose(torch.relu(search(images)), forward(images))  # equal wherever the score is positive
    config = EngineConfig(pool_size=16, cma_generations=40, cma_popsize=8, adam_steps=3, batch_size=64)
    blind = synthesize(forward, gen, ChannelCentre([0]), seed=0, config=config)
    guided = synthesize(forward, gen, ChannelCentre([0]), seed=0, config=config, search_forward=search)
    assert blind.stats["silent_after_pool"] == guided.stats["silent_after_pool"] == 1
    assert blind.silent.item() and not guided.silent.item()


def test_pre_activation_of_resnet_layers_and_of_a_layer_without_relu(net):
    for layer, crop in [("layer1", True), ("layer3", False)]:
        forward, plan = layer_forward(net, layer, 32, crop=crop)
        search = pre_activation(net, layer, forward, 32, plan)
        assert search is not None
        images = torch.rand(3, 3, 32, 32)
        with torch.no_grad():
            pre, out = search(images), forward(images)
        assert (pre < 0).any() and torch.allclose(torch.relu(pre), out, atol=1e-5)
    forward, plan = layer_forward(net, "layer1.0.conv1", 32, crop=False)
    assert pre_activation(net, "layer1.0.conv1", forward, 32, plan) is None  # no ReLU inside: no surrogate


def test_a_cropped_forward_is_the_studied_cell_also_where_no_crop_saves_anything():
    """torchvision's ResNet-18 layer3 at 96 px sees the whole image from its centred cell (3, 3): no
    crop plan, and the forward still returns that cell, not the full map (whose middle cell, which
    an objective would read, is (2, 2)); the pre-activation reads the same cell."""
    from protoscope.synth.position import unit_position

    model = build_model("resnet18").eval()
    cell = unit_position(model, "layer3", 96)
    forward, plan = layer_forward(model, "layer3", 96, crop=True)
    full, _ = layer_forward(model, "layer3", 96, crop=False)
    assert plan is None and (cell.y, cell.x) == (3, 3)
    images = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    search = pre_activation(model, "layer3", forward, 96, plan, (cell.y, cell.x))
    with torch.no_grad():
        out, whole, pre = forward(images), full(images), search(images)
    assert out.shape == (2, 256, 1, 1) and torch.allclose(out[:, :, 0, 0], whole[:, :, 3, 3], atol=1e-5)
    assert torch.allclose(torch.relu(pre), out, atol=1e-5)


class _Vector(Generator):
    """A 3-d latent drawn as a 1x1 RGB image; every pool sample is the same latent, so Adam's start is known."""

    latent_dim, image_size, init_std = 3, 1, 0.5
    start = torch.tensor([0.2, -0.1, 0.3])

    def sample(self, n, generator=None, device=None):
        return self.start.expand(int(n), -1).clone().to(device or "cpu")

    def render(self, z):
        return z.view(-1, 3, 1, 1)


class _Bowls(nn.Module):
    """Unit k = 100 - Σ_j a_j (x_j - c_kj)²: concave, its peak farther than a few Adam steps reach."""

    def __init__(self, centres, curvature=(0.5, 1.0, 2.0)):
        super().__init__()
        self.c, self.a = torch.tensor(centres), torch.tensor(curvature)

    def forward(self, images):
        x = images[:, :, 0, 0]  # (B, 3)
        return (100 - (self.a * (x[:, None] - self.c[None]) ** 2).sum(-1))[:, :, None, None]


def test_adam_phase_matches_torch_adam():
    """With nothing but Adam (no backtracking, no early exit, a known start), the iterates are torch's."""
    centres = [[3.0, -4.0, 3.5], [-3.5, 4.0, -3.0], [4.0, 3.0, -4.0]]
    model, gen, objective = _Bowls(centres), _Vector(), ChannelCentre(range(3))
    config = EngineConfig(pool_size=1, cma_generations=0, adam_steps=10, adam_lr=0.3, adam_betas=(0.6, 0.95), patience=11,
                          backtrack=False, batch_size=2)  # batches of 2: a unit's row moves between batches
    out = synthesize(model, gen, objective, seed=0, config=config)

    z = gen.start.repeat(3, 1).requires_grad_(True)
    adam = torch.optim.Adam([z], lr=config.adam_lr * gen.init_std, betas=config.adam_betas)
    scores, path = [], []
    for _ in range(config.adam_steps):
        score = objective(model(gen(z)))
        scores.append(score.detach())
        path.append(z.detach().clone())
        adam.zero_grad()
        (-score.sum()).backward()
        adam.step()
    scores = torch.stack(scores, dim=1)
    assert (scores.diff(dim=1) > 0).all()  # every step climbs: the best latent is the last one evaluated
    assert (path[-1] - gen.start).abs().min() > 1.0  # and the steps went somewhere
    torch.testing.assert_close(out.trace, scores, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.latent, path[-1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.score, scores[:, -1], rtol=1e-5, atol=1e-5)


def test_a_units_result_does_not_depend_on_the_units_beside_it(net):
    """A unit's prototype is the same whichever units share its batches (no CMA-ES: its draws are shared)."""
    forward, _ = layer_forward(net, "layer2", 16, crop=False)
    gen = FourierGenerator(size=16, cutoff=6)
    config = EngineConfig(pool_size=24, cma_generations=0, adam_steps=8, adam_lr=2.0, patience=2, tol=0.25,
                          backtrack=True, batch_size=3)
    everyone = synthesize(forward, gen, ChannelCentre(range(8)), seed=5, config=config)  # [0 1 2] [3 4 5] [6 7]
    some = [1, 4, 6, 7]
    few = synthesize(forward, gen, ChannelCentre(some), seed=5, config=config)  # [1 4 6] [7], then fewer
    # units leave at different steps and some step back, so the batches change as the run goes on
    assert len(set((~torch.isnan(everyone.trace)).sum(1).tolist())) > 2
    assert (everyone.trace[:, 1:] < everyone.trace[:, :-1]).any()
    torch.testing.assert_close(few.latent, everyone.latent[some], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(few.score, everyone.score[some], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(few.trace, everyone.trace[some], rtol=1e-4, atol=1e-5, equal_nan=True)


def test_reported_scores_are_a_float32_forward_of_the_returned_latents(net):
    forward, _ = layer_forward(net, "layer2", 16, crop=False)
    gen = FourierGenerator(size=16, cutoff=6)
    objective = ChannelCentre(range(8))
    out = synthesize(forward, gen, objective, seed=0, config=FAST, bf16=True)
    with torch.no_grad():
        images = gen(out.latent)
        fp32 = objective(forward(images))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = objective(forward(images)).float()
    torch.testing.assert_close(out.score, fp32, rtol=1e-5, atol=1e-5)
    assert (bf16 - fp32).abs().max() > 1e-3  # a bf16 score would not pass the check above
    rendered = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    assert (out.images.int() - rendered.int()).abs().max() <= 1  # the images are the latents' (up to rounding)


def test_natural_starts_wake_a_unit_that_random_images_never_excite():
    """Unit 0 needs a red centre far beyond what random images reach (t = 0.97); a natural image
    with a red centre, encoded into the pool, wakes it. Without it the unit is reported silent."""
    gen = PixelGenerator(size=4, latent_size=4)
    model = _Thresholds([0.97, 0.0])
    config = EngineConfig(pool_size=16, cma_generations=0, adam_steps=3, batch_size=64)
    red = torch.zeros(2, 3, 4, 4)
    red[:, 0] = 0.99
    plain = synthesize(model, gen, ChannelCentre([0, 1]), seed=1, config=config)
    started = synthesize(model, gen, ChannelCentre([0, 1]), seed=1, config=config, starts=gen.encode(red))
    assert plain.silent.tolist() == [True, False] and plain.stats["silent_after_pool"] == 1
    assert started.silent.tolist() == [False, False] and started.stats["silent_after_random_pool"] == 1
    assert started.stats["silent_after_pool"] == 0 and started.score[0] > 0


def test_a_robust_adam_phase_sees_moved_images(net):
    """With `robust`, Adam climbs the unit's value under random small moves, so the path (and the
    result) differ from the plain search; the final score is still the plain forward's."""
    gen = FourierGenerator(size=32, cutoff=6)
    forward, _ = layer_forward(net, "layer2", 32, crop=False)
    plain = synthesize(forward, gen, ChannelCentre(range(4)), seed=0, config=FAST)
    moved = synthesize(forward, gen, ChannelCentre(range(4)), seed=0, config=replace(FAST, robust=True))
    assert not torch.equal(plain.latent, moved.latent)
    with torch.no_grad():
        again = ChannelCentre(range(4))(forward(moved.images.permute(0, 3, 1, 2).float() / 255))
    assert torch.allclose(again, moved.score, rtol=0.05, atol=0.05)
