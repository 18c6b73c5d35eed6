"""Which image prior makes prototypes worth trusting, and at what cost (issue #28, item 3).

For each layer of a study's net (a stored checkpoint: the last epoch of the first run), every unit's
prototype is made with each option, side by side in one process, one thread, with the study's
`synth:` budget (the full study's, also on a quick store) and the same seed; then each is scored
with the trust scores (`analyze.trust`, the
second run's last checkpoint judging plausibility)
against the study's stimulus set. Options:

- fourier: the default prior (low-pass, 1/f, decorrelated colour);
- fourier+robust: the same, Adam seeing each image slightly moved, scaled and turned every step;
- maco: the phase alone is searched, the amplitude is the stimulus images' mean spectrum (MACO);
- maco+robust;
- fourier+natural: the pool also holds 64 encoded stimulus images (`synth.natural_starts`).

Columns: activation (the unit's value at its studied cell, mean over units), path similarity (mean
over earlier layers and units), spectral distance (median), robustness (mean), plausibility (mean),
natural ratio (median), share trustworthy, seconds per unit. Spectral distance is near 1 for maco by
construction (its amplitude is fixed to the stimulus spectrum): judge maco by the other scores.

    python bench/priors.py --store out/demo --plot bench/results/priors_demo.png > bench/results/priors_demo.txt
    python bench/priors.py --quick --store STORE                 # the quick demo's store
    python bench/priors.py --study digits --store out/digits > bench/results/priors_digits.txt
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import checkpoint_model, store_arguments, stored_study  # noqa: E402

OPTIONS = {
    "fourier": ("fourier", {}, False, 0),
    "fourier+robust": ("fourier", {}, True, 0),
    "maco": ("maco", {}, False, 0),
    "maco+robust": ("maco", {}, True, 0),
    "fourier+natural": ("fourier", {}, False, 64),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    store_arguments(parser)
    parser.add_argument("--layers", default=None, help="default: the study's")
    parser.add_argument("--options", default=",".join(OPTIONS), help=f"some of {', '.join(OPTIONS)}")
    parser.add_argument("--plot", type=Path, default=None, help="draw the frontier (activation against share "
                        "trustworthy, per layer) to this PNG")
    args = parser.parse_args(argv)
    from protoscope.analyze import trust as scores
    from protoscope.analyze.activations import stimulus_set
    from protoscope.stages.trust import thresholds

    study = stored_study(args)
    first, second = study.runs[0], study.runs[1]
    net, judge_net = checkpoint_model(study, first), checkpoint_model(study, second)
    images = stimulus_set(study).images
    layers = args.layers.split(",") if args.layers else list(study.layers)
    print(f"{first.name} (last epoch), judged against {len(images)} stimulus images with {second.name}'s last "
          f"checkpoint; the {args.study} study's synth budget; one thread")
    print("layer | option | activation | path | spectral | robustness | plausibility | natural ratio | "
          "trustworthy | s/unit")
    rows = []
    with scores.shared_passes():
        needed = study.layers[: max(study.layers.index(layer) for layer in layers) + 1]  # and the earlier ones
        judge = scores.Judge(net, needed, images, embed=(judge_net, study.layers[-1]), k=study.trust.k,
                             draws=study.trust.draws, seed=study.synth.seed)
        for layer in layers:
            for option in args.options.split(","):
                made, seconds = _prototypes(study, net, layer, option, images)
                found = judge.score(layer, list(range(len(made.score))), made.images.permute(0, 3, 1, 2).float() / 255,
                                    study.layers[: study.layers.index(layer)])
                ok = scores.trustworthy(found, thresholds(study.trust))
                rows.append((layer, option, float(made.score.mean()), float(ok.mean()), seconds / len(made.score)))
                path = f"{np.nanmean(found.path_mean):+.3f}" if found.path_similarity else "n/a"
                print(f"{layer} | {option} | {made.score.mean():.3f} | {path} | "
                      f"{np.median(found.spectral_naturalness):.2f} | {np.nanmean(found.robustness):.2f} | "
                      f"{np.nanmean(found.plausibility):+.4f} | {np.nanmedian(found.natural_ratio):.2f} | "
                      f"{ok.mean():.2f} | {seconds / len(made.score):.3f}")
    if args.plot:
        _plot(rows, layers, args.plot)
    return 0


def _plot(rows: list[tuple], layers: list[str], path: Path) -> None:
    """Per layer, each option's mean activation against its share of trustworthy prototypes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(layers), figsize=(3.4 * len(layers), 3.2), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        for k, (_, option, activation, share, _) in enumerate(r for r in rows if r[0] == layer):
            ax.scatter(activation, share, color=f"C{k}", label=option)
            ax.annotate(option, (activation, share), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_title(layer)
        ax.set_xlabel("activation (mean over units)")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("share trustworthy")
    fig.suptitle("Image priors: activation against trust (bench/priors.py)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _prototypes(study, net, layer: str, option: str, images):
    """Every unit's prototype with one option, and the seconds it took."""
    import protoscope as ps

    from protoscope.demo import demo_study

    name, extra, robust, natural = OPTIONS[option]
    spec = demo_study(study.store, name=study.name).synth  # the full study's budget, also on a quick store
    options = dict(spec.generator_options if name == spec.generator else {}, **extra)
    if name == "maco":
        options["images"] = images
    config = replace(spec.engine_config(), robust=robust)
    start = time.perf_counter()
    made = ps.prototypes(net, layer, image_size=spec.image_size or study.runs[0].data.image_size, generator=name,
                         generator_options=options, objective=spec.objective, config=config, device="cpu",
                         seed=spec.seed, natural=images[:natural] if natural else None)
    return made, time.perf_counter() - start


if __name__ == "__main__":
    raise SystemExit(main())
