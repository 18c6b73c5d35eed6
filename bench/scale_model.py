#!/usr/bin/env python
"""The seed's full experiment on paper: wall time and store size, from measured per-unit costs.

Reads the synthesis benchmark's JSON (`bench/synth_speed.py --out DIR`) and
projects, for `runs x checkpoints x channels x repeats` prototypes (the seed:
6 x 101 x 960 x 2, about 1.16 M), the wall time of the engine at its defaults
and of the tuned per-unit method on one machine like the benchmark's, on one
GPU, and on N such workers with the Ray executor (jobs are independent
(run, layer, epoch) blocks, so N workers divide the time until there are
fewer jobs than workers), and the store's uncompressed size.

A GPU number comes from a benchmark JSON measured on a GPU (`--gpu-json`);
without one it is an estimate, `--gpu-factor` times the CPU throughput, and
printed as such.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

SEED = {"runs": 6, "checkpoints": 101, "repeats": 2}


def seconds_per_checkpoint(path: Path, condition: str = "random") -> dict:
    """Σ_layers median-over-seeds (s/unit) x channels: one repeat of one checkpoint, every unit."""
    data = json.loads(path.read_text())
    cond = data["conditions"][condition]
    out = {}
    for key in ("eng_seconds", "pu_seconds"):
        per_layer = {layer: float(np.median([seed["summary"][key] for seed in info["seeds"]])) * info["channels"]
                     for layer, info in cond["layers"].items()}
        out[key] = sum(per_layer.values())
        out[key.replace("seconds", "longest")] = max(per_layer.values())  # one (run, layer, epoch) job
    out["channels"] = sum(info["channels"] for info in cond["layers"].values())
    out["layers"] = len(cond["layers"])
    out["device"] = data["args"].get("device", "cpu")
    return out


def human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def store_bytes(prototypes: int, image_size: int, latent_dim: int, adam_steps: int) -> int:
    """Uncompressed: uint8 image, float32 latent, score, trace per step, silent flag."""
    return prototypes * (image_size * image_size * 3 + 4 * latent_dim + 4 + 4 * adam_steps + 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "synth_speed.json")
    p.add_argument("--gpu-json", type=Path, default=None, help="the same benchmark measured on a GPU")
    p.add_argument("--gpu-factor", type=float, default=50.0,
                   help="without --gpu-json: assumed GPU throughput / this CPU's (an estimate)")
    p.add_argument("--runs", type=int, default=SEED["runs"])
    p.add_argument("--checkpoints", type=int, default=SEED["checkpoints"])
    p.add_argument("--repeats", type=int, default=SEED["repeats"])
    p.add_argument("--workers", default="1,8,32,128", help="Ray workers (machines like the benchmark's)")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--latent-dim", type=int, default=1839, help="the fourier generator at 96 px")
    p.add_argument("--adam-steps", type=int, default=64)
    args = p.parse_args(argv)

    cpu = seconds_per_checkpoint(args.json)
    blocks = args.runs * args.checkpoints * args.repeats
    prototypes = blocks * cpu["channels"]
    jobs = args.runs * args.checkpoints * cpu["layers"]  # (run, layer, epoch), repeats inside
    print(f"the seed's experiment: {args.runs} runs x {args.checkpoints} checkpoints x {cpu['channels']} channels "
          f"x {args.repeats} repeats = {prototypes:,} prototypes ({jobs:,} jobs)")
    print(f"measured ({args.json.name}, device {cpu['device']}): engine {cpu['eng_seconds']:.1f} s per checkpoint and "
          f"repeat ({cpu['channels'] / cpu['eng_seconds']:.1f} prototypes/s); tuned per-unit "
          f"{cpu['pu_seconds']:.0f} s ({cpu['channels'] / cpu['pu_seconds']:.2f} prototypes/s)")
    if args.gpu_json:
        gpu = seconds_per_checkpoint(args.gpu_json)
        gpu_note = f"measured ({args.gpu_json.name}, device {gpu['device']})"
    else:
        gpu = {k: cpu[k] / args.gpu_factor for k in ("eng_seconds", "pu_seconds")}  # an assumption, printed as one
        gpu_note = f"ESTIMATE: {args.gpu_factor:g}x the CPU throughput, no GPU measurement"
    print()
    print(f"{'where':<34} {'engine':>12} {'per-unit':>12}")
    print("-" * 60)
    print(f"{'1 machine like the benchmark':<34} {human(cpu['eng_seconds'] * blocks):>12} {human(cpu['pu_seconds'] * blocks):>12}")
    print(f"{'1 GPU (' + ('measured' if args.gpu_json else 'estimate') + ')':<34} "
          f"{human(gpu['eng_seconds'] * blocks):>12} {human(gpu['pu_seconds'] * blocks):>12}")
    for n in [int(x) for x in args.workers.split(",") if x]:
        # jobs are independent: N workers share the total, but never finish before the longest job
        eng = max(cpu["eng_seconds"] * blocks / n, cpu["eng_longest"] * args.repeats)
        pu = max(cpu["pu_seconds"] * blocks / n, cpu["pu_longest"] * args.repeats)
        print(f"{f'{n} Ray workers (CPU machines)':<34} {human(eng):>12} {human(pu):>12}")
    size = store_bytes(prototypes, args.image_size, args.latent_dim, args.adam_steps)
    print()
    print(f"GPU: {gpu_note}")
    print(f"store: {size / 2**30:.0f} GiB uncompressed ({args.image_size} px uint8 prototypes, {args.latent_dim}-d float32 "
          f"latents, {args.adam_steps}-step traces; Zarr's compression shrinks the images, not the latents)")
    print("not counted: receptive-field maps (one per checkpoint and layer), reading checkpoints, analysis stages")
    return 0 if math.isfinite(cpu["eng_seconds"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
