"""protoscope without a study file: every call of the in-memory API on a torchvision ResNet-18.

    .venv/bin/python examples/resnet18_api.py [--weights resnet18.pth] [--out examples/output]

The nets are random inits (no network access here): pass `--weights` to load yours into the
first (a `.safetensors` or `.pth` state dict, read with weights_only=True — never unpickled);
the second stays a random init, a stand-in for another seed's net. Stimulus images are the
built-in shapes (4 classes, random colours) at 64 px; budgets are small, so the whole script
takes under a minute on one CPU core. What it prints is in output/resnet18_api.txt, the
pictures beside it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torchvision

import protoscope as ps
from protoscope.data import shapes

SIZE = 64


def resnet18(seed: int, weights: str | None = None) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(weights=None)
    if weights:
        from protoscope.nets.checkpoints import load_into

        load_into(model, weights)
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="a local ResNet-18 state dict for the first net")
    parser.add_argument("--out", default=str(Path(__file__).parent / "output"), help="where the PNGs go")
    args = parser.parse_args()
    out = Path(args.out)
    torch.set_num_threads(1)
    net, other = resnet18(0, args.weights), resnet18(1)
    images, labels = shapes.labelled_set(320, seed=7, size=SIZE)  # uint8 (320, 3, 64, 64), 80 per class
    print(f"ResNet-18 ({'weights ' + args.weights if args.weights else 'random init'}), {len(images)} shapes "
          f"at {SIZE} px ({', '.join(shapes.CLASSES)})\n")

    # 1. prototypes: the engine as `evolve` runs it, 16 channels of layer3
    clock = time.perf_counter()
    protos = ps.prototypes(net, "layer3", units=range(16), image_size=SIZE, pool_size=256, adam_steps=32, seed=0)
    print(f"prototypes(net, 'layer3', units=range(16)): images {tuple(protos.images.shape)} {protos.images.dtype}, "
          f"{time.perf_counter() - clock:.1f} s")
    print(f"  scores {[round(float(s), 1) for s in protos.score]}, silent {int(protos.silent.sum())} of 16")
    ps.show(protos, out / "resnet18_layer3_prototypes.png")
    # ... and for a list of models (checkpoints): the same seed for each, so differences come from the weights
    both = ps.prototypes([net, other], "layer2", units=[0, 1, 2, 3], image_size=SIZE, pool_size=64, adam_steps=8)
    print(f"prototypes([net, other], 'layer2', units=[0, 1, 2, 3]): mean scores "
          f"{[round(float(p.score.mean()), 2) for p in both]}\n")

    # 2. receptive_field: the centre unit's effective receptive field and its Gaussian mask
    rf = ps.receptive_field(net, "layer3", SIZE, samples=64)
    fit = rf.fit
    print(f"receptive_field(net, 'layer3', {SIZE}): map {tuple(rf.map.shape)}, Gaussian at "
          f"({fit.centre_y:.1f}, {fit.centre_x:.1f}), sigmas {fit.sigma_major:.1f} x {fit.sigma_minor:.1f} px, "
          f"mask > 0.5 on {int((rf.mask > 0.5).sum())} px\n")
    ps.show(rf, out / "resnet18_layer3_receptive_field.png", scale=2)

    # 3. atlas: UMAP of layer3 activations, a 5 x 5 grid of whitened means, an icon per filled cell
    clock = time.perf_counter()
    atlas = ps.atlas(net, "layer3", images, labels, grid=5, min_count=3, n_neighbors=15, icon_size=48,
                     adam_steps=32, pool_size=64)
    print(f"atlas(net, 'layer3', images, grid=5): {int(atlas.filled.sum())} of 25 cells filled, "
          f"icons {tuple(atlas.icon.shape)}, {time.perf_counter() - clock:.1f} s (UMAP's first call compiles)\n")
    ps.show(atlas, out / "resnet18_layer3_atlas.png", scale=1)

    # 4. rdms: one rsatoolbox RDM per model, with run / layer / epoch descriptors
    rdms = ps.rdms([net, other], "layer4", images, labels, categories=shapes.CLASSES, run="resnet18")
    from rsatoolbox.rdm import compare

    print(f"rdms([net, other], 'layer4', images, labels): {rdms.n_rdm} RDMs over {rdms.n_cond} images, "
          f"epochs {list(rdms.rdm_descriptors['epoch'])}, {rdms.dissimilarity_measure}")
    print(f"  Pearson r between them: {float(compare(rdms[0], rdms[1], method='corr')[0, 0]):.3f}\n")

    # 5. align: the fitted estimators of convergent learning between the two nets
    clock = time.perf_counter()
    fit = ps.align(net, other, "layer2", images, mi_samples=2000, penalties=[0.01], sparse_iter=2000)
    print(f"align(net, other, 'layer2', images): {fit.correlation.n_samples_} samples "
          f"(images x positions), {time.perf_counter() - clock:.1f} s")
    print(f"  matched correlation: bipartite {fit.bipartite.mean_:.3f}, semi {fit.semi.mean_:.3f}; "
          f"unpaired {fit.bipartite.unpaired_fraction_:.0%}; MI bipartite {fit.mi_bipartite.mean_:.3f} nats")
    print(f"  dead units {len(fit.correlation.dead_a_)} / {len(fit.correlation.dead_b_)}; spectral clusters "
          f"{len(fit.spectral.sizes_a_)}; linear CKA {fit.cka.matrix_[0, 1]:.3f} "
          f"(debiased {fit.cka_debiased.matrix_[0, 1]:.3f})\n")

    print(f"pictures: {', '.join(sorted(p.name for p in out.glob('resnet18_*.png')))}")


if __name__ == "__main__":
    main()
