#!/usr/bin/env python
"""Copy the method pages' figures from a demo store into docs/figures/, shrunk for the web.

    python docs/figures.py --store out/demo

The figures are the demo's own (`make demo` draws them under STORE/figures/); the pages show one
each. They are shrunk to at most 1100 px wide so the repository stays small; the PDFs beside the
originals keep full resolution.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image

FIGURES = [
    "probe_accuracy", "prototypes_layer3", "development_layer2", "prototype_diversity",
    "trust_over_training", "tuning_over_training", "rsa_consecutive", "rsa_categories",
    "align_matching", "align_track", "atlas_clrjit-s0+keepclr-s0_layer3", "width_study",
]
HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=Path("out/demo"))
    args = parser.parse_args()
    out = HERE / "figures"
    out.mkdir(exist_ok=True)
    for name in FIGURES:
        image = Image.open(args.store / "figures" / f"{name}.png")
        if image.width > 1100:
            image = image.resize((1100, round(image.height * 1100 / image.width)), Image.LANCZOS)
        image.save(out / f"{name}.png", optimize=True)
    shutil.copy(HERE.parent / "bench" / "results" / "priors_demo.png", out / "priors_demo.png")


if __name__ == "__main__":
    main()
