"""A route around a oneDNN bug that crashes, hangs or corrupts narrow nets' training on AVX2 CPUs.

oneDNN's AVX2 kernel for the weight gradient of a 1×1 convolution with stride > 1 writes past its
workspace when the input is channels-last and has fewer than 8 channels (its block): one
thread aborts (`double free or corruption`, a segfault), two threads hang or return gradients that
are wrong by up to tens of percent (`bench/results/onednn_sweep.txt`, `docs/cpu_support.md`). ResNet downsampling shortcuts are exactly
such convolutions, so a ResNet-18 at width ≤ 0.109 (base width < 8) hits it on every CPU without
AVX-512, and on AVX-512 CPUs under `ONEDNN_MAX_CPU_ISA=AVX2`. Input gradients, forward passes,
stride-1 and AVX-512 kernels are right.

The route: such a convolution reads its input subsampled (`x[..., ::s, ::s]`) and convolves it
with stride 1, which is the same function (a 1×1 kernel sees one pixel of every stride cell) and
has the same parameters, but never reaches the broken kernel. It is taken only where oneDNN runs
its AVX2 kernels, so the fast AVX-512 path and its bits are untouched elsewhere.
"""

from __future__ import annotations

import os

import torch
from torch import nn
from torch.nn import functional as F

# oneDNN's ISA names (ONEDNN_MAX_CPU_ISA) whose 1×1 weight-gradient kernel is the broken AVX2 one.
AVX2_ISAS = {"AVX2", "AVX2_VNNI", "AVX2_VNNI_2"}
BLOCK = 8  # the AVX2 kernel's channel block: inputs with fewer channels break it


def onednn_runs_avx2() -> bool:
    """Whether oneDNN's convolutions run its AVX2 kernels here: a CPU whose best is AVX2, or a
    better one capped with ONEDNN_MAX_CPU_ISA (or its old name DNNL_MAX_CPU_ISA)."""
    if not torch.backends.mkldnn.is_available() or not torch.backends.mkldnn.enabled:
        return False
    capped = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    if capped in AVX2_ISAS:
        return True
    # ATen's own pick; "AVX2" also under ATEN_CPU_CAPABILITY=avx2 on an AVX-512 CPU, where the
    # route is not needed but gives the same function.
    return torch.backends.cpu.get_cpu_capability() == "AVX2" and capped not in ("SSE41", "AVX")


def is_affected(module: nn.Module) -> bool:
    """A strided, unpadded 1×1 convolution whose groups have fewer than 8 input channels."""
    return (type(module) is nn.Conv2d and module.kernel_size == (1, 1) and module.stride != (1, 1)
            and module.padding == (0, 0) and module.in_channels // module.groups < BLOCK)


class SubsampledPointwiseConv(nn.Conv2d):
    """A strided 1×1 `Conv2d` computed as subsample-then-stride-1; same parameters and state dict."""

    def _conv_forward(self, input, weight, bias):
        sy, sx = self.stride
        return F.conv2d(input[..., ::sy, ::sx], weight, bias, 1, 0, self.dilation, self.groups)


def route_around_onednn_bug(model: nn.Module, device: torch.device | str = "cpu") -> int:
    """Before training `model` on `device`: where oneDNN runs its AVX2 kernels, make every affected
    convolution a `SubsampledPointwiseConv` (in place: parameters, names and hooks stay). Returns how
    many were changed."""
    if torch.device(device).type != "cpu" or not onednn_runs_avx2():
        return 0
    changed = 0
    for module in model.modules():
        if is_affected(module):
            module.__class__ = SubsampledPointwiseConv  # a subclass with no state of its own
            changed += 1
    return changed
