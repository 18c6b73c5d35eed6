"""What trust scores cost against the synthesis they judge (issue #28: "a small fraction of the
synthesis time"). For each layer of a study's net (a stored checkpoint: the last epoch of the first
run): seconds of `protoscope.prototypes` for every unit with the study's `synth:` budget, against
seconds of `protoscope.trust` for all of them (every score: path similarity at the earlier studied
layers, spectral naturalness, robustness, natural ratio, plausibility in the second run's last
checkpoint, transfer to it), side by side in one process, one thread.

    python bench/trust_cost.py --store out/demo > bench/results/trust_cost.txt
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
    parser.add_argument("--layers", default=None, help="default: the study's")
    args = parser.parse_args(argv)
    import protoscope as ps
    from protoscope.analyze.activations import stimulus_set

    study = stored_study(args)
    first, second = study.runs[0], study.runs[1]
    net, other = checkpoint_model(study, first), checkpoint_model(study, second)
    images = stimulus_set(study).images
    spec, size = study.synth, study.synth.image_size or first.data.image_size
    print(f"{first.name} (last epoch) against {second.name}; {len(images)} stimulus images; synth budget of the "
          f"{'quick ' if args.quick else ''}{args.study} study; one thread")
    print(f"{'layer':>8} {'units':>6} {'prototypes s':>13} {'trust s':>8} {'trust / prototypes':>19}")
    layers = args.layers.split(",") if args.layers else list(study.layers)
    for layer in layers:
        start = time.perf_counter()
        protos = ps.prototypes(net, layer, image_size=size, generator=spec.generator,
                               generator_options=spec.generator_options, objective=spec.objective,
                               config=spec.engine_config(), device="cpu")
        made = time.perf_counter() - start
        units = len(protos.score)
        start = time.perf_counter()
        ps.trust(net, layer, protos, images, earlier=study.layers[: study.layers.index(layer)],
                 embed=(other, "avgpool"), partner=(other, list(range(units))))
        scored = time.perf_counter() - start
        print(f"{layer:>8} {units:>6} {made:13.2f} {scored:8.2f} {scored / made:19.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
