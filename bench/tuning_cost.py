"""What tuning curves cost against the synthesis beside them, per checkpoint (issue #31: "small beside
synthesis"). On a fresh copy of one run's checkpoints, side by side in one process and one thread,
as the stages run them: the evolve stage's job for a checkpoint (every unit of every studied layer,
every repeat, receptive fields included) and the tuning stage's job for it (the whole stimulus set
through the net once, every unit of every layer). The first epoch also traces each stage's net.

    python bench/tuning_cost.py --store out/demo --epochs 0,8,16 > bench/results/tuning_cost_demo.txt
    python bench/tuning_cost.py --store out/demo --epochs 0,16 --default-budget > bench/results/tuning_cost_demo_default_budget.txt
    python bench/tuning_cost.py --quick --store STORE      # the quick demo's store
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import store_arguments, stored_study  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    store_arguments(parser)
    parser.add_argument("--run", default="clrjit-s0")
    parser.add_argument("--epochs", default=None, help="comma-separated; default: the run's first and last")
    parser.add_argument("--default-budget", action="store_true", help="synthesis with the engine's default budget "
                        "(64 Adam steps, a pool of 1024) instead of the study's")
    args = parser.parse_args(argv)
    from protoscope.demo import demo_study
    from protoscope.stages import execute
    from protoscope.stages.prototypes import STAGE as evolve
    from protoscope.stages.tuning import STAGE as tuning
    from protoscope.specs import TuningSpec

    study = stored_study(args)
    run = study.run(args.run)
    epochs = [int(e) for e in args.epochs.split(",")] if args.epochs else [0, run.epochs]
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "store"
        shutil.copytree(args.store / "runs" / args.run, copy / "runs" / args.run)
        study = demo_study(copy, quick=args.quick, name=args.study)
        study = study.model_copy(update={"runs": [study.run(args.run)], "tuning": study.tuning or TuningSpec()})
        if args.default_budget:
            from protoscope.specs import SynthSpec

            default = SynthSpec()
            study = study.model_copy(update={"synth": study.synth.model_copy(update={
                k: getattr(default, k) for k in ("pool_size", "cma_generations", "adam_steps", "patience")})})
        spec = study.tuning
        images = spec.hues * min(spec.images, study.rsa.images) + (
            len(spec.contrasts) * spec.orientations * spec.frequencies * spec.phases)
        print(f"{args.run}: {len(study.layers)} layers; synthesis {study.synth.repeats} repeats, pool "
              f"{study.synth.pool_size}, {study.synth.adam_steps} Adam steps; tuning {images} stimulus images; one thread")
        print("epoch | synthesis s | tuning s | tuning / synthesis")
        ratios = []
        for epoch in epochs:
            seconds = []
            for stage in (evolve, tuning):
                start = time.perf_counter()
                execute(stage, study, only=lambda job, e=epoch, at=(2 if stage is evolve else 1): job.key[at] == e)
                seconds.append(time.perf_counter() - start)
            ratios.append(seconds[1] / seconds[0])
            print(f"{epoch} | {seconds[0]:.2f} | {seconds[1]:.2f} | {ratios[-1]:.3f}")
    print(f"tuning_over_synthesis_after_the_first={ratios[-1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
