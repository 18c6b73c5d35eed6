"""Narrow nets on a CPU without AVX-512: oneDNN's AVX2 kernels, forced with ONEDNN_MAX_CPU_ISA=AVX2.

The weight gradient of a strided 1×1 convolution with fewer than 8 channels-last input channels crashes
there on one thread and hangs or is wrong on two (`protoscope.nets.onednn`, docs/cpu_support.md).
Each case of `tests/onednn_cases.py` runs in a fresh process (oneDNN reads the ISA and the thread
count when torch loads) and must equal the same run with oneDNN off, ATen's own kernels.

Tolerances (relative, in norm, per tensor): a conv weight's one-step SimCLR update 10 % (two
correct float32 kernels differ by up to 3 % there: batch norm at init makes that gradient
ill-conditioned; the bug's errors are 28–390 %); probe features 1e-4, and the probe's accuracy
within one test image; the engine's scores 1e-4; the width study's trained weights 1e-3.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from protoscope.nets import onednn

CASES = Path(__file__).with_name("onednn_cases.py")
pytestmark = pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"),
                                reason="the AVX2 kernels need a CPU with AVX2")


def run_cases(out: Path, threads: int, *flags: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2", OMP_NUM_THREADS=str(threads))
    try:
        return subprocess.run([sys.executable, str(CASES), str(out), *flags], env=env, capture_output=True,
                              text=True, timeout=150)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{CASES.name} {' '.join(flags)} on {threads} thread(s) hung (over 150 s)")


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def mismatches(got: dict, want: dict) -> list[str]:
    """Every tensor outside its case's tolerance (module docstring), as 'key: error'."""
    bad = []
    for key, reference in want.items():
        case, name = key.split("/")[0], key.split("/")[-1]
        if case == "train" and not ("conv" in name or "downsample.0" in name):
            continue  # batch-norm updates: ill-conditioned at init, and no conv kernel of their own
        if case == "probe" and name == "accuracy":
            error, limit = abs(float(got[key]) - float(reference)), 1 / 32 + 1e-9
        else:
            error, limit = relative(got[key], reference), {"train": 0.1, "probe": 1e-4, "engine": 1e-4,
                                                           "width": 1e-3}[case]
        if not error <= limit:
            bad.append(f"{key}: {error:.3g} > {limit:g}")
    return bad


@pytest.mark.parametrize("threads", [1, 2])
def test_narrow_nets_train_probe_and_search_as_without_onednn(tmp_path, threads):
    results = {}
    for mode, flags in (("route", ()), ("reference", ("--mkldnn-off",))):
        proc = run_cases(tmp_path / f"{mode}.pt", threads, *flags)
        assert proc.returncode == 0, f"{mode} on {threads} thread(s): exit {proc.returncode}\n{proc.stderr[-2000:]}"
        results[mode] = torch.load(tmp_path / f"{mode}.pt")
    assert set(results["route"]) == set(results["reference"])
    assert {key.split("/")[0] for key in results["route"]} == {"train", "probe", "engine", "width"}
    assert mismatches(results["route"], results["reference"]) == []


def test_without_the_route_narrow_training_crashes(tmp_path):
    """The guard guards something: with the route off, one thread dies in `loss.backward()`. If this
    fails, the pinned torch's oneDNN no longer has the bug (docs/cpu_support.md says how to check)."""
    proc = run_cases(tmp_path / "unrouted.pt", 1, "--no-route")
    assert proc.returncode != 0, "the unrouted narrow nets trained: is oneDNN's AVX2 1x1 kernel fixed?"


def test_the_route_is_the_same_convolution():
    """Subsample-then-stride-1 against a strided `Conv2d`, in float64 (no oneDNN): values and gradients."""
    torch.manual_seed(0)
    for stride, size, groups in ((2, 9, 1), (2, 8, 2), (3, 10, 1), ((2, 1), 7, 1)):
        conv = nn.Conv2d(4, 8, 1, stride=stride, groups=groups).double()
        routed = nn.Conv2d(4, 8, 1, stride=stride, groups=groups).double()
        routed.load_state_dict(conv.state_dict())
        routed.__class__ = onednn.SubsampledPointwiseConv
        x = torch.rand(3, 4, size, size, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
        grads = []
        for module in (conv, routed):
            xi = x.clone().requires_grad_(True)
            y = module(xi)
            grads.append((y, *torch.autograd.grad(y.square().sum(), [xi, module.weight, module.bias])))
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        assert routed.state_dict().keys() == conv.state_dict().keys()


def test_which_convolutions_and_machines_take_the_route(monkeypatch):
    assert onednn.is_affected(nn.Conv2d(4, 8, 1, stride=2))
    assert onednn.is_affected(nn.Conv2d(14, 28, 1, stride=2, groups=2))  # 7 channels a group
    assert onednn.is_affected(nn.Conv2d(1, 2, 1, stride=2))  # one channel crashes too (bench/results/onednn_sweep.txt)
    for unaffected in (nn.Conv2d(8, 16, 1, stride=2), nn.Conv2d(16, 16, 1, stride=2, groups=2), nn.Conv2d(4, 8, 1),
                       nn.Conv2d(4, 8, 3, stride=2), nn.Conv2d(4, 8, 1, stride=2, padding=1)):
        assert not onednn.is_affected(unaffected), unaffected
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    assert onednn.onednn_runs_avx2()
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 8, 1, stride=2), nn.Conv2d(8, 16, 1, stride=2))
    assert onednn.route_around_onednn_bug(model, "cpu") == 1
    assert type(model[1]) is onednn.SubsampledPointwiseConv and type(model[2]) is nn.Conv2d
    assert onednn.route_around_onednn_bug(nn.Conv2d(4, 8, 1, stride=2), "cuda") == 0  # no oneDNN there
    for lower in ("SSE41", "AVX"):  # their kernels are right
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", lower)
        assert not onednn.onednn_runs_avx2()
