"""Where one float32 Adam step of the engine goes, against the per-unit step (issue #29, item 2).

Random-init torchvision ResNet-18 at 96 px, a 16x16x3 pixel latent upsampled and put through a
sigmoid (the speed bench's generator). For each layer:

- the engine's step at batch sizes 16 … 512: the generator, the cropped channels-last forward to
  the studied cell, the objective, the backward to the latents; seconds per image, and the part of
  it each piece takes (timed separately, one thread);
- the per-unit step: one latent, the full float32 NCHW image, forward and backward;
- torch.profiler's top operators (self CPU time) for the engine at batch 64 and for the per-unit
  step: which convolution kernels run, and how much goes to memory layout changes.

    python bench/engine_profile.py > bench/results/engine_profile_avx2.txt
    python bench/engine_profile.py --compile --layers layer1,layer2,layer3,layer4 > bench/results/engine_compile_avx2.txt
    python bench/engine_profile.py --layers layer1 --batches 16,64 --repeats 2      # quick
"""

from __future__ import annotations

import argparse
import time

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", default="layer1,layer3")
    parser.add_argument("--batches", default="16,32,64,128,256,512")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per setting (median)")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--top", type=int, default=8, help="profiler operators shown")
    parser.add_argument("--compile", action="store_true", help="only: the step at batch 64, eager against "
                        "torch.compile (its compile seconds apart)")
    args = parser.parse_args(argv)
    from protoscope.nets.models import build_model
    from protoscope.runtime import bf16_native
    from protoscope.synth.generators import make_generator
    from protoscope.synth.layer import layer_forward, layer_units
    from protoscope.synth.objectives import ChannelCentre

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model("resnet18").eval().requires_grad_(False)
    generator = make_generator("pixel", size=args.size, latent_size=16)
    print(f"resnet18 (random init) at {args.size} px, pixel latent 16x16x3, float32, one thread; "
          f"native bf16 here: {bf16_native(torch.device('cpu'))}")
    for layer in args.layers.split(","):
        units = layer_units(model, [layer], args.size)[layer]
        model.to(memory_format=torch.channels_last)
        engine, plan = layer_forward(model, layer, args.size, crop=True, channels_last=True)
        full, _ = layer_forward(model, layer, args.size, crop=False, channels_last=False)
        crop = "none" if plan is None else f"{plan.y1 - plan.y0}x{plan.x1 - plan.x0} px of {args.size}"
        if args.compile:
            _compiled(layer, engine, generator, ChannelCentre(torch.arange(64) % units), args.repeats)
            continue
        print(f"\n{layer}: {units} units; crop {crop}")
        print("batch | s/image step | generator % | forward % | backward % | images/s")
        for batch in [int(b) for b in args.batches.split(",")]:
            parts = _engine_step(engine, generator, ChannelCentre(torch.arange(batch) % units), batch, args.repeats)
            total = sum(parts.values())
            print(f"{batch} | {total / batch:.5f} | {100 * parts['generator'] / total:.0f} | "
                  f"{100 * parts['forward'] / total:.0f} | {100 * parts['backward'] / total:.0f} | {batch / total:.0f}")
        cell = plan.full_centre if plan is not None else None
        one = _per_unit_step(full, generator, cell, args.repeats)
        print(f"per-unit step (batch 1, full image, NCHW): {one:.5f} s/image")
        print(f"\nprofile, engine at batch 64 ({layer}):")
        _profile(lambda: _step(engine, generator, ChannelCentre(torch.arange(64) % units), 64), args.top)
        print(f"\nprofile, per-unit step ({layer}):")
        _profile(lambda: _step(full, generator, ChannelCentre([0], at=cell), 1), args.top)
    return 0


def _compiled(layer: str, forward, generator, objective, repeats: int) -> None:
    """Seconds per image of the step at batch 64, eager and under torch.compile (after compiling)."""
    def step(z: torch.Tensor) -> torch.Tensor:
        return objective(forward(generator(z))).sum()

    def timed(run) -> float:
        samples = []
        for r in range(repeats + 1):
            z = torch.randn(64, generator.latent_dim, generator=torch.Generator().manual_seed(r)).requires_grad_(True)
            start = time.perf_counter()
            run(z).backward()
            if r:
                samples.append(time.perf_counter() - start)
        return float(torch.tensor(samples).median()) / 64

    eager = timed(step)
    start = time.perf_counter()
    compiled = torch.compile(step)
    z = torch.randn(64, generator.latent_dim).requires_grad_(True)
    compiled(z).backward()
    compile_s = time.perf_counter() - start
    print(f"{layer}: eager {eager:.5f} s/image, compiled {timed(compiled):.5f} s/image (compiling took {compile_s:.0f} s)")


def _step(forward, generator, objective, batch: int) -> None:
    z = torch.randn(batch, generator.latent_dim, generator=torch.Generator().manual_seed(batch)).requires_grad_(True)
    objective(forward(generator(z))).sum().backward()


def _engine_step(forward, generator, objective, batch: int, repeats: int) -> dict[str, float]:
    """Median seconds of each piece of one step: generator, forward (+ objective), backward."""
    times: dict[str, list[float]] = {"generator": [], "forward": [], "backward": []}
    for r in range(repeats + 1):
        z = torch.randn(batch, generator.latent_dim, generator=torch.Generator().manual_seed(r)).requires_grad_(True)
        start = time.perf_counter()
        images = generator(z)
        mid = time.perf_counter()
        score = objective(forward(images)).sum()
        end = time.perf_counter()
        score.backward()
        done = time.perf_counter()
        if r:  # the first is a warm-up
            for key, value in (("generator", mid - start), ("forward", end - mid), ("backward", done - end)):
                times[key].append(value)
    return {key: float(torch.tensor(values).median()) for key, values in times.items()}


def _per_unit_step(forward, generator, cell, repeats: int) -> float:
    from protoscope.synth.objectives import ChannelCentre

    objective = ChannelCentre([0], at=cell)
    samples = []
    for r in range(repeats + 1):
        start = time.perf_counter()
        _step(forward, generator, objective, 1)
        if r:
            samples.append(time.perf_counter() - start)
    return float(torch.tensor(samples).median())


def _profile(step, top: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top, max_name_column_width=42))


if __name__ == "__main__":
    raise SystemExit(main())
