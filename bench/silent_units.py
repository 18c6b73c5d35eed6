"""Are the units the engine reports silent really silent? Each stored prototype's score (the unit's
value at the centre position) against the stimulus images' values for the same unit, at the centre
and as the spatial mean that the unit page's "top stimulus images" show (issue #28, item 4).

For each run, layer and epoch: how many units are silent; how many of those a stimulus image
excites at the centre (the search missed it) or only on average over positions (the page shows two
different measures); and for how many units the best stimulus image beats the prototype at the
centre. Needs a store with prototypes (`protoscope demo`, or the quick demo).

    python bench/silent_units.py --store out/demo > bench/results/silent_units_demo.txt
    python bench/silent_units.py --quick --store STORE      # two runs, first and last epoch
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import checkpoint_model, store_arguments, stored_study  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    store_arguments(parser)  # with --quick: two runs, first and last epoch
    args = parser.parse_args(argv)
    import zarr

    from protoscope.analyze.activations import layer_activations, stimulus_set
    from protoscope.analyze.trust import centre_values
    from protoscope.nets.checkpoint_files import run_checkpoints

    study = stored_study(args)
    images = stimulus_set(study).images.float() / 255
    print(f"{len(images)} stimulus images; repeat 0 of each prototype")
    print("run | epoch | layer | units | silent | silent, a stimulus excites the centre | silent, only the "
          "spatial mean | best stimulus beats the prototype at the centre")
    for run in study.runs[:2] if args.quick else study.runs:
        files = run_checkpoints(study, run)
        for epoch in [min(files), max(files)] if args.quick else list(files):
            model = checkpoint_model(study, run, epoch)
            centres = {layer: centre_values(model, layer, images).numpy() for layer in study.layers}
            means = layer_activations(model, list(study.layers), images, device="cpu")
            for layer in study.layers:
                group = zarr.open_group(str(args.store / "arrays.zarr" / "runs" / run.name / layer), mode="r")
                at = list(group["epoch"][:]).index(epoch)
                silent = np.asarray(group["silent"][at, 0]).astype(bool)
                score = np.asarray(group["score"][at, 0])
                centre, mean = centres[layer], means[layer].numpy()
                at_centre = int((centre[:, silent].max(0) > 0).sum()) if silent.any() else 0
                on_average = int(((mean[:, silent].max(0) > 0) & ~(centre[:, silent].max(0) > 0)).sum()) \
                    if silent.any() else 0
                beaten = int((centre.max(0) > score + 1e-6).sum())
                print(f"{run.name} | {epoch} | {layer} | {len(silent)} | {int(silent.sum())} | {at_centre} | "
                      f"{on_average} | {beaten}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
