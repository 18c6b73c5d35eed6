"""Streaming moments equal the in-memory computation, and their memory does not grow with the data."""

import resource

import numpy as np
import pytest
import torch

from protoscope.analyze.align import Correlation, Moments
from protoscope.analyze.align.stats import as_rows


def batches(x, size):
    return [x[i : i + size] for i in range(0, len(x), size)]


def test_streamed_moments_equal_numpy_on_the_whole_data():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1000, 5)) * [1, 2, 3, 4, 5] + 100.0  # a large mean: cancellation would show
    b = a[:, :3] @ rng.standard_normal((3, 4)) + rng.standard_normal((1000, 4))
    m = Moments()
    for xa, xb in zip(batches(a, 97), batches(b, 97)):
        m.partial_fit(torch.as_tensor(xa), torch.as_tensor(xb))
    assert m.n_samples_seen_ == 1000
    np.testing.assert_allclose(m.mean(0), a.mean(0), rtol=1e-12)
    np.testing.assert_allclose(m.cov(0), np.cov(a.T, bias=True), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(m.cov(0, 1), np.cov(a.T, b.T, bias=True)[:5, 5:], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(m.sd(1), b.std(0), rtol=1e-10)
    corr = Correlation().fit(m)
    full = np.corrcoef(a.T, b.T)
    np.testing.assert_allclose(corr.between_, full[:5, 5:], atol=1e-10)
    np.testing.assert_allclose(corr.within_b_, full[5:, 5:], atol=1e-10)


def test_conv_maps_count_every_position_as_a_sample():
    x = torch.randn(6, 3, 4, 5, dtype=torch.float64)
    rows = as_rows(x)
    assert rows.shape == (6 * 4 * 5, 3)
    assert torch.equal(rows[7], x[0, :, 1, 2])  # row 7 = image 0, position (1, 2)
    m = Moments().partial_fit(x[:2]).partial_fit(x[2:])
    np.testing.assert_allclose(m.mean(0), x.mean(dim=(0, 2, 3)).numpy(), rtol=1e-12)
    np.testing.assert_allclose(m.sd(0), x.transpose(0, 1).reshape(3, -1).std(1, unbiased=False).numpy(), rtol=1e-10)


def test_dead_units_are_reported_and_excluded_never_nan():
    rng = np.random.default_rng(1)
    a = np.maximum(rng.standard_normal((500, 4)), 0)
    a[:, 2] = 0.0  # a dead ReLU
    b = a + 0.1 * rng.standard_normal((500, 4))
    b[:, 0] = 3.0  # a constant unit
    corr = Correlation().fit(Moments().partial_fit(a, b))
    assert corr.dead_a_.tolist() == [2] and corr.dead_b_.tolist() == [0]
    assert corr.alive_a_.tolist() == [0, 1, 3] and corr.alive_b_.tolist() == [1, 2, 3]
    assert corr.between_.shape == (3, 3) and corr.within_a_.shape == (3, 3)
    for matrix in (corr.between_, corr.within_a_, corr.within_b_, corr.combined()):
        assert np.isfinite(matrix).all()
    assert corr.sd_a_[2] == 0 and np.isfinite(corr.mean_b_).all()


def _state_bytes(n_images, dims=64, batch=2000):
    """Stream n_images rows from a generator (never all in memory); return (stats, peak RSS growth)."""
    gen = torch.Generator().manual_seed(0)

    def stream():
        for start in range(0, n_images, batch):
            yield torch.randn(min(batch, n_images - start), dims, generator=gen), torch.randn(
                min(batch, n_images - start), dims, generator=gen)

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    m = Moments().fit(stream())
    grew_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    return m, grew_kb


def test_memory_stays_flat_as_the_number_of_images_grows():
    small, _ = _state_bytes(2_000)
    large, grew_kb = _state_bytes(200_000)  # 2 x 200k x 64 float32 = 102 MB streamed
    assert large.n_samples_seen_ == 100 * small.n_samples_seen_
    assert large.nbytes() == small.nbytes()  # the statistics' size is fixed by the units
    assert large.nbytes() < 200_000
    streamed_kb = 2 * 200_000 * 64 * 4 / 1024
    assert grew_kb < streamed_kb / 10  # peak memory grew by far less than the data streamed through


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_memory_stays_flat():
    def peak(n):
        torch.cuda.reset_peak_memory_stats()
        m = Moments(device="cuda")
        for _ in range(n):
            m.partial_fit(torch.randn(1000, 64, device="cuda"), torch.randn(1000, 64, device="cuda"))
        return torch.cuda.max_memory_allocated()

    assert peak(100) <= peak(5) * 1.05
