"""Where a demo training step's time goes: making the two augmented views, and the model step.

    python bench/train_step.py > bench/results/train_step.txt
    python bench/train_step.py --batches 2 --steps 1 --warm-up 0 --batch-size 16   # a smoke run

The demo's first run (shapes, 32 px, batch 128, colour jitter). Views of 10 batches, made in this
process: lightly's SimCLRTransform one PIL image at a time (what training used before), and the
same augmentation batched by kornia (`train.views`, what it uses now); drawing the raw batches is
timed apart. Then 10 SimCLR steps (both views in one forward, NT-Xent, SGD) in float32 and bf16
autocast, NCHW and channels-last, after 2 steps of warm-up each. Training draws the raw batches in
one worker process and makes the views and the step in the main one, so on 2 cores they compete.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import torch


def _timed(label: str, work, repeats: int = 10):
    started = time.perf_counter()
    out = [work(k) for k in range(repeats)]
    print(f"{label}: {(time.perf_counter() - started) * 1000 / repeats:.0f} ms")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=10, help="batches whose views are made and timed")
    parser.add_argument("--steps", type=int, default=10, help="timed model steps per setting")
    parser.add_argument("--warm-up", type=int, default=2, help="untimed model steps before them")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the demo's")
    args = parser.parse_args(argv)
    from lightly.loss import NTXentLoss
    from lightly.transforms import SimCLRTransform
    from torchvision.transforms.functional import to_pil_image

    from protoscope.data.datasets import IMAGENET_MEAN, IMAGENET_STD, TrainImages
    from protoscope.demo import demo_study
    from protoscope.train.simclr import build_simclr
    from protoscope.train.views import augment_settings, make_views, view_augmentation

    run = demo_study("/tmp/unused").runs[0]
    n = args.batch_size or run.optimizer.batch_size
    source = TrainImages(run.data, n)
    batches = _timed(f"raw batch of {n} images drawn", lambda k: source.images(1, k), args.batches)
    reference = SimCLRTransform(input_size=run.data.image_size, **augment_settings(run),
                                normalize={"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)})
    random.seed(0)

    def lightly_views(k):
        pairs = [reference(to_pil_image(image)) for image in batches[k]]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

    started = time.perf_counter()
    _timed(f"views for one step (2 x {n}), lightly per image", lightly_views, args.batches)
    per_image = time.perf_counter() - started
    augment = view_augmentation(run)
    started = time.perf_counter()
    views = _timed(f"views for one step (2 x {n}), kornia batched", lambda k: make_views(augment, batches[k], k),
                   args.batches)
    print(f"views: kornia batched is {per_image / (time.perf_counter() - started):.1f}x faster than lightly per image")
    loss_fn = NTXentLoss(temperature=run.simclr.temperature)
    for bf16 in (False, True):
        for channels_last in (False, True):
            model = build_simclr(run)
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            started = time.perf_counter()
            for k in range(args.warm_up + args.steps):
                if k == args.warm_up:
                    started = time.perf_counter()
                x = torch.cat(views[k % args.batches])
                x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    z = model(x)
                    loss = loss_fn(*z.float().chunk(2))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            print(f"model step {'bf16' if bf16 else 'fp32'} {'channels-last' if channels_last else 'NCHW'}: "
                  f"{(time.perf_counter() - started) * 1000 / args.steps:.0f} ms ({torch.get_num_threads()} threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
