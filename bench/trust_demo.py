"""Trust scores of a study's stored prototypes, first epoch against last (issue #28): does training
make a deep layer's prototypes more trustworthy? `protoscope.trust` on repeat 0 of every run's
prototypes, units the engine found silent left out; path similarity at every earlier studied layer.

    python bench/trust_demo.py --store out/demo > bench/results/trust_demo.txt
    python bench/trust_demo.py --quick --store STORE      # the quick demo's store
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
    store_arguments(parser)
    parser.add_argument("--layers", default="layer3,layer4")
    args = parser.parse_args(argv)
    import zarr

    import protoscope as ps
    from protoscope.analyze.activations import stimulus_set
    from protoscope.nets.checkpoint_files import run_checkpoints

    study = stored_study(args)
    images = stimulus_set(study).images
    print(f"{len(images)} stimulus images, k = 8; means over live units (median for spectral and ratio)")
    print("run | layer | epoch | live units | path similarity by earlier layer | spectral | robustness | natural ratio")
    for run in study.runs:
        files = run_checkpoints(study, run)
        for layer in args.layers.split(","):
            group = zarr.open_group(str(args.store / "arrays.zarr" / "runs" / run.name / layer), mode="r")
            stored = list(group["epoch"][:])
            for epoch in (min(files), max(files)):
                model = checkpoint_model(study, run, epoch)
                at = stored.index(epoch)
                live = ~np.asarray(group["silent"][at, 0]).astype(bool)
                earlier = study.layers[: study.layers.index(layer)]
                found = ps.trust(model, layer, np.asarray(group["prototype"][at, 0]), images, earlier=earlier)
                path = " ".join(f"{name} {np.nanmean(v[live]):+.3f}" for name, v in found.path_similarity.items())
                print(f"{run.name} | {layer} | {epoch} | {int(live.sum())} | {path} | "
                      f"{np.median(found.spectral_naturalness[live]):.2f} | {np.nanmean(found.robustness[live]):.2f} | "
                      f"{np.nanmedian(found.natural_ratio[live]):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
