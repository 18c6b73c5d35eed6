"""Which oneDNN convolutions break: the weight gradient of one convolution, per ISA, thread count and
input channels, against the same gradient with oneDNN off (docs/cpu_support.md).

    python bench/onednn_sweep.py > bench/results/onednn_sweep.txt
    python bench/onednn_sweep.py --short    # the broken case alone: AVX2, 1x1 stride 2, channels-last
    python bench/onednn_sweep.py --short --channels 2 --threads 1   # a smoke run: one process

Each case runs in a fresh process (a broken one aborts or hangs it) with ONEDNN_MAX_CPU_ISA set;
an ISA above this CPU's is capped by oneDNN at what the CPU has. A case reads "ok" (relative error
of the weight gradient ≤ 1e-4), "wrong N %", "crash (signal)" or "hang" (no answer within 20 s).
The input gradient is checked too, and reported only when it is wrong.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

ISAS = ("AVX2", "AVX2_VNNI", "AVX512_CORE", "")  # "" is the CPU's own best
CHANNELS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 16)
VARIANTS = {  # name: (kernel, stride, channels-last)
    "1x1 stride 2, channels-last": (1, 2, True),
    "1x1 stride 2, NCHW": (1, 2, False),
    "1x1 stride 1, channels-last": (1, 1, True),
    "3x3 stride 2, channels-last": (3, 2, True),
}

CASE = """
import json, sys, torch
kernel, stride, last, channels = {kernel}, {stride}, {last}, {channels}
torch.manual_seed(0)
x = torch.randn(64, channels, 16, 16, dtype=torch.float64).float()
w = torch.randn(2 * channels + 4, channels, kernel, kernel)
grads = []
for mkldnn in (False, True):
    torch.backends.mkldnn.enabled = mkldnn
    xi = (x.to(memory_format=torch.channels_last) if last else x).clone().requires_grad_()
    wi = w.clone().requires_grad_()
    y = torch.nn.functional.conv2d(xi, wi, stride=stride, padding=kernel // 2)
    y.backward(torch.ones_like(y) + y.detach())
    grads.append((wi.grad.clone(), xi.grad.clone()))
error = lambda a, b: float((a - b).norm() / b.norm())
print(json.dumps([error(grads[1][0], grads[0][0]), error(grads[1][1], grads[0][1])]))
"""


def one_case(isa: str, threads: int, variant: tuple, channels: int) -> str:
    kernel, stride, last = variant
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    env.pop("ATEN_CPU_CAPABILITY", None)
    if isa:
        env["ONEDNN_MAX_CPU_ISA"] = isa
    else:
        env.pop("ONEDNN_MAX_CPU_ISA", None)
    code = CASE.format(kernel=kernel, stride=stride, last=last, channels=channels)
    try:
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "hang"
    if done.returncode != 0:
        return f"crash ({signal.Signals(-done.returncode).name})" if done.returncode < 0 else f"exit {done.returncode}"
    weight, inputs = json.loads(done.stdout.strip().splitlines()[-1])
    verdict = "ok" if weight <= 1e-4 else f"wrong {100 * weight:.0f} %"
    return verdict + ("" if inputs <= 1e-4 else f", input grad wrong {100 * inputs:.0f} %")


def main(argv: list[str] | None = None) -> int:
    import argparse

    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="ISA AVX2 and the strided 1x1 channels-last case only")
    parser.add_argument("--channels", default=None, help="input channels, comma-separated (default: per variant)")
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    args = parser.parse_args(argv)
    threads_list = [int(t) for t in args.threads.split(",") if t]

    print(f"torch {torch.__version__}; CPU's own ISA (ATen): {torch.backends.cpu.get_cpu_capability()}; "
          f"weight gradient vs oneDNN off, batch 64, 16 px, float32")
    for name, variant in list(VARIANTS.items())[:1] if args.short else VARIANTS.items():
        isas = ("AVX2",) if args.short else ISAS if name.startswith("1x1 stride 2, channels-last") else ("AVX2", "")
        channels = CHANNELS if name.startswith("1x1 stride 2, channels-last") else (2, 4, 7)
        if args.channels:
            channels = tuple(int(c) for c in args.channels.split(",") if c)
        for isa in isas:
            for threads in threads_list:
                cells = [f"{c}: {one_case(isa, threads, variant, c)}" for c in channels]
                print(f"{name} | ISA {isa or 'native'} | {threads} thread(s) | " + "; ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
