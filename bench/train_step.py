"""Where a demo training step's time goes: making the two augmented views, and the model step.

    python bench/train_step.py > bench/results/train_step.txt

The demo's first run (shapes, 32 px, batch 128, lightly's SimCLR transform with colour jitter):
views of 10 batches made in this process (`view_loader` with no worker), then 10 SimCLR steps
(both views in one forward, NT-Xent, SGD) in float32 and in bf16 autocast, NCHW and channels-last,
after 2 steps of warm-up each. Training runs the views in one worker process beside the model
step (bf16, channels-last), so on 2 cores the two compete.
"""

from __future__ import annotations

import time

import torch


def main() -> None:
    from lightly.loss import NTXentLoss

    from protoscope.data.datasets import TrainImages
    from protoscope.data.loader import view_loader
    from protoscope.demo import demo_study
    from protoscope.train.simclr import build_simclr, simclr_transform

    run = demo_study("/tmp/unused").runs[0]
    source, transform = TrainImages(run.data, run.optimizer.batch_size), simclr_transform(run)
    started, views = time.perf_counter(), []
    for _, view0, view1 in view_loader(source, transform, run.seed, 0, 0):
        views.append((view0, view1))
        if len(views) == 10:
            break
    print(f"views for one step (2 x {run.optimizer.batch_size} images, one process): "
          f"{(time.perf_counter() - started) * 100:.0f} ms")
    loss_fn = NTXentLoss(temperature=run.simclr.temperature)
    for bf16 in (False, True):
        for channels_last in (False, True):
            model = build_simclr(run)
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            for k in range(12):
                if k == 2:
                    started = time.perf_counter()
                x = torch.cat(views[k % 10])
                x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    z = model(x)
                    loss = loss_fn(*z.float().chunk(2))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            print(f"model step {'bf16' if bf16 else 'fp32'} {'channels-last' if channels_last else 'NCHW'}: "
                  f"{(time.perf_counter() - started) * 100:.0f} ms ({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
