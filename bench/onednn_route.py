"""What the route around oneDNN's AVX2 1×1 bug costs (`nets/onednn.py`, docs/cpu_support.md).

    python bench/onednn_route.py > bench/results/onednn_route.txt
    python bench/onednn_route.py --widths 0.03125 --steps 1    # a short run
    python bench/onednn_route.py --counts-only                 # the demo's counts alone, on any CPU

A training step (forward of a batch, backward, SGD) of a narrow ResNet-18 (16 px, channels-last,
batch 64, float32, one thread), timed in fresh processes side by side:
- native ISA, no route: the fast path this machine runs anyway;
- AVX2 (ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2), routed: what protoscope does there;
- AVX2, oneDNN off in the process: the blunt alternative the issue measured.
AVX2 without the route is not timed: it crashes (tests/test_cpu_isa.py). Then how many
convolutions the route changes in the demo's nets: none, so the demo runs exactly as before.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
SETTINGS = [("native ISA, no route", {}, "plain"), ("AVX2, routed", AVX2, "route"),
            ("AVX2, oneDNN off", AVX2, "mkldnn-off")]
WIDTHS = (0.03125, 0.0625, 0.09375)


def one_setting(mode: str, width: float, steps: int = 20) -> dict:
    """In this process: ms per training step, after 3 steps of warm-up."""
    import torch

    from protoscope.nets.models import build_model
    from protoscope.nets.onednn import route_around_onednn_bug

    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = mode != "mkldnn-off"
    torch.manual_seed(0)
    model = build_model("resnet18", width, small_input=True)
    routed = route_around_onednn_bug(model) if mode == "route" else 0
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    images = torch.randn(64, 3, 16, 16).to(memory_format=torch.channels_last)

    def step():
        loss = model(images).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return {"ms": (time.perf_counter() - started) * 1000 / steps, "routed": routed}


def measure(mode: str, env: dict, width: float, steps: int = 20) -> dict:
    code = f"import json, sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); import onednn_route as b; " \
           f"print(json.dumps(b.one_setting({mode!r}, {width}, {steps})))"
    done = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, OMP_NUM_THREADS="1", **env),
                          capture_output=True, text=True, timeout=600, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def demo_counts() -> list[str]:
    """Convolutions the route changes in the demo's nets (it takes them only under AVX2)."""
    from protoscope.demo import demo_study
    from protoscope.nets.models import build_model
    from protoscope.nets.onednn import is_affected
    from protoscope.nets.width import conv_family

    study = demo_study("/tmp/unused")
    run = study.runs[0]
    lines = [f"demo SimCLR net ({run.arch}, width {run.width}): "
             f"{sum(map(is_affected, build_model(run.arch, run.width, run.small_input).modules()))} of its convolutions"]
    for width, net in conv_family(1, 10, list(study.width.widths)).items():
        lines.append(f"width study, conv family, width {width}: {sum(map(is_affected, net.modules()))}")
    return lines


def main(argv: list[str] | None = None) -> int:
    import platform

    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default=",".join(map(str, WIDTHS)), help="ResNet-18 widths, comma-separated")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per setting")
    parser.add_argument("--counts-only", action="store_true",
                        help="skip the timings (their native setting crashes where the CPU's own ISA is AVX2)")
    args = parser.parse_args(argv)

    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, native ISA "
          f"{torch.backends.cpu.get_cpu_capability()}; one thread; ms per training step (batch 64, 16 px)")
    for width in [] if args.counts_only else [float(w) for w in args.widths.split(",") if w]:
        results = {label: measure(mode, env, width, args.steps) for label, env, mode in SETTINGS}
        base = results["native ISA, no route"]["ms"]
        cells = ", ".join(f"{label} {r['ms']:.1f} ms ({r['ms'] / base:.2f}x)" for label, r in results.items())
        print(f"resnet18 width {width} ({results['AVX2, routed']['routed']} convs routed): {cells}")
        print(f"  routed vs oneDNN off, both AVX2: {results['AVX2, oneDNN off']['ms'] / results['AVX2, routed']['ms']:.2f}x "
              f"faster")
    print("convolutions the route changes in the demo (none: the demo runs as before):")
    for line in demo_counts():
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
