"""What trust scores cost against the synthesis they judge, per checkpoint (issue #28: "a small
fraction of the synthesis time"). For a stored checkpoint of the study (default: the first run's
first and last epochs), side by side in one process, one thread:

- synthesis: every unit of every studied layer, `synth.repeats` times, with the study's `synth:`
  settings (natural starts included), as the evolve stage makes them;
- trust: every score of those prototypes as the trust stage computes them for one (run, epoch) job:
  the stimulus images once through the net (every layer), the judging run's last checkpoint, and
  the partner run's checkpoint at that epoch for transfer.

Both reuse what they traced at the first epoch at the later ones, as the stages do in a worker.

    python bench/trust_cost.py --store out/demo --epochs 0,8,16 > bench/results/trust_cost_demo.txt
    python bench/trust_cost.py --store out/demo --epochs 0,8,16 --default-budget > bench/results/trust_cost_demo_default_budget.txt
    python bench/trust_cost.py --quick --store STORE      # the quick demo's store
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import checkpoint_model, store_arguments, stored_study  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    store_arguments(parser)
    parser.add_argument("--epochs", default=None, help="comma-separated; default: the first run's first and last")
    parser.add_argument("--default-budget", action="store_true", help="synthesis with the engine's default budget "
                        "(64 Adam steps, a pool of 1024) instead of the study's")
    args = parser.parse_args(argv)
    import torch

    from protoscope.analyze import trust as scores
    from protoscope.analyze.activations import stimulus_set
    from protoscope.nets.checkpoint_files import run_checkpoints
    from protoscope.nets.checkpoints import load_into
    from protoscope.stages.prototypes import build_generator
    from protoscope.synth.layer import layer_prototypes, natural_starts, prepare

    study = stored_study(args)
    run, judge, partner = study.runs[0], study.runs[1], study.runs[-1]
    files = run_checkpoints(study, run)
    epochs = [int(e) for e in args.epochs.split(",")] if args.epochs else [min(files), max(files)]
    images = stimulus_set(study).images
    spec, size = study.synth, study.synth.image_size or run.data.image_size
    if args.default_budget:
        from protoscope.specs import SynthSpec

        default = SynthSpec()
        spec = spec.model_copy(update={k: getattr(default, k) for k in ("pool_size", "cma_generations", "adam_steps",
                                                                            "patience")})
    generator = build_generator(spec, size, torch.device("cpu"), study)
    starts = natural_starts(generator, images, spec.natural_starts)
    judge_net = checkpoint_model(study, judge)
    print(f"{run.name}: {len(study.layers)} layers x {spec.repeats} repeats per checkpoint; {len(images)} stimulus "
          f"images; judged by {judge.name}, transfer to {partner.name}; one thread; synthesis budget: pool "
          f"{spec.pool_size}, {spec.adam_steps} Adam steps, patience {spec.patience}")
    print("epoch | synthesis s | trust s | trust / synthesis   (the first epoch traces the nets for both)")
    net = checkpoint_model(study, run, epochs[0]).requires_grad_(False)
    other = checkpoint_model(study, partner, epochs[0])
    prepared, keep = {}, {}  # traced once per process and reused at every epoch, as the two stages do
    for epoch in epochs:
        load_into(net, files[epoch]).eval()
        load_into(other, run_checkpoints(study, partner)[epoch]).eval()
        start = time.perf_counter()
        made = {}
        for layer in study.layers:
            if layer not in prepared:
                prepared[layer] = prepare(net, layer, size, spec.objective, spec.crop)
            made[layer] = [layer_prototypes(prepared[layer], generator, _units(net, layer, size), seed=spec.seed + r,
                                            config=spec.engine_config(), device=torch.device("cpu"), bf16=False,
                                            starts=starts) for r in range(spec.repeats)]
        synthesis = time.perf_counter() - start
        start = time.perf_counter()
        with scores.shared_passes(keep):
            judged = scores.Judge(net, study.layers, images, embed=(judge_net, study.layers[-1]), partner=other,
                                  k=study.trust.k, draws=study.trust.draws, seed=spec.seed)
            for layer, results in made.items():
                for result in results:
                    units = list(range(len(result.score)))
                    judged.score(layer, units, result.images.permute(0, 3, 1, 2).float() / 255,
                                 study.layers[: study.layers.index(layer)], units)
        trust = time.perf_counter() - start
        print(f"{epoch} | {synthesis:.2f} | {trust:.2f} | {trust / synthesis:.2f}")
    return 0


def _units(net, layer: str, size: int) -> int:
    from protoscope.synth.layer import layer_units

    return layer_units(net, [layer], size)[layer]


if __name__ == "__main__":
    raise SystemExit(main())
