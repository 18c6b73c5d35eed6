"""Streaming moments equal the in-memory computation, and their memory does not grow with the data."""

import gc
import json
import resource
import subprocess
import sys
from pathlib import Path

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


def _stream(n_images, dims=64, batch=2000):
    """n_images rows of two blocks of `dims` units, made batch by batch (never all in memory)."""
    gen = torch.Generator().manual_seed(0)
    for start in range(0, n_images, batch):
        k = min(batch, n_images - start)
        yield torch.randn(k, dims, generator=gen), torch.randn(k, dims, generator=gen)


def _reset_peak() -> bool:
    """Restart the kernel's peak-RSS count (VmHWM) at the current RSS; Linux only, False elsewhere."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_kb() -> float:
    """Peak RSS in KiB: VmHWM where there is one (the count `_reset_peak` restarts), else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            return float(next(line.split()[1] for line in f if line.startswith("VmHWM:")))
    except (OSError, StopIteration):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 1024 if sys.platform == "darwin" else peak  # bytes on macOS


def _measure(n_images, fresh_process=False) -> dict:
    """Stream n_images rows through Moments; its statistics and how far the peak RSS rose meanwhile.

    Why not ru_maxrss alone: it is the peak so far, which earlier tests of the session have already
    raised past anything this stream needs, so it would read "no growth" whatever happened; and
    tracemalloc does not see torch's CPU tensors. So the peak is restarted first, or, where it cannot
    be, measured in a fresh interpreter whose peak so far is just its imports.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only spin, for seconds on a busy machine
    try:
        Moments().fit(_stream(20_000))  # warm up: the allocator's pools settle after a few batches
        gc.collect()
        if not (fresh_process or _reset_peak()):
            return _measure_in_a_fresh_process(n_images)
        before = _peak_kb()
        m = Moments().fit(_stream(n_images))
        return {"n_samples_seen_": m.n_samples_seen_, "nbytes": m.nbytes(), "grew_kb": _peak_kb() - before}
    finally:
        torch.set_num_threads(threads)


def _measure_in_a_fresh_process(n_images) -> dict:
    tests = str(Path(__file__).parents[2])
    code = (f"import json, sys; sys.path.insert(0, {tests!r}); from analyze.align.test_stats import _measure; "
            f"print(json.dumps(_measure({n_images}, fresh_process=True)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_memory_stays_flat_as_the_number_of_images_grows():
    small = Moments().fit(_stream(2_000))
    large = _measure(200_000)  # 2 x 200k x 64 float32 = 102 MB streamed
    assert large["n_samples_seen_"] == 100 * small.n_samples_seen_
    assert large["nbytes"] == small.nbytes()  # the statistics' size is fixed by the units
    assert large["nbytes"] < 200_000
    streamed_kb = 2 * 200_000 * 64 * 4 / 1024
    assert large["grew_kb"] < streamed_kb / 10  # peak memory grew by far less than the data streamed through


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_memory_stays_flat():
    def peak(n):
        torch.cuda.reset_peak_memory_stats()
        m = Moments(device="cuda")
        for _ in range(n):
            m.partial_fit(torch.randn(1000, 64, device="cuda"), torch.randn(1000, 64, device="cuda"))
        return torch.cuda.max_memory_allocated()

    assert peak(100) <= peak(5) * 1.05
