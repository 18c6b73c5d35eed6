"""The cases that broke oneDNN's AVX2 kernels, run as a fresh process (see tests/test_cpu_isa.py).

    python tests/onednn_cases.py OUT.pt [--mkldnn-off] [--no-route]

runs each case on narrow nets and saves what it computed, keyed by case, as plain tensors. The
caller sets ONEDNN_MAX_CPU_ISA and OMP_NUM_THREADS: oneDNN reads them when torch loads, so they
cannot change inside one process. `--mkldnn-off` is the reference (ATen's own kernels); `--no-route`
turns protoscope's route around the bug off, to show that the cases fail without it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from protoscope.nets.models import build_model

WIDTHS = (0.03125, 0.0625, 0.09375, 0.125)  # base widths 2, 4, 6, 8: the first three have 2–7-channel shortcuts


def tiny_run(width: float):
    """A study run that trains one SimCLR step of 32 images at 16 px (one step: later ones would amplify
    the float32 rounding of any two correct kernels)."""
    from protoscope.study import parse_study

    study = parse_study({
        "name": "isa", "store": "unused", "precision": "float32",
        "defaults": {"arch": "resnet18", "width": width, "small_input": True, "epochs": 1,
                     "data": {"name": "shapes", "image_size": 16, "epoch_size": 32},
                     "optimizer": {"lr": 0.05, "batch_size": 32, "warmup_steps": 1, "weight_decay": 0.0},
                     "simclr": {"temperature": 0.5, "hidden_dim": 16, "projection_dim": 8,
                                "augment": {"gaussian_blur": 0.0, "min_scale": 0.5}}},
        "runs": [{"condition": "clrjit", "seed": 0}]}, Path("isa.yaml"))
    return study.runs[0]


def train_case(width: float, folder: Path) -> dict[str, torch.Tensor]:
    """The weight change of SimCLR training (`train_run`): what a wrong weight gradient shows in."""
    from protoscope.nets.checkpoints import checkpoint_name, load_state
    from protoscope.train.simclr import train_run

    train_run(tiny_run(width), folder, torch.device("cpu"), bf16=False, workers=0)
    before, after = load_state(folder / checkpoint_name(0)), load_state(folder / checkpoint_name(1))
    return {name: after[name] - before[name] for name in after if after[name].is_floating_point()}


def probe_case(width: float) -> dict[str, torch.Tensor]:
    """Pooled features a probe reads, and the probe's test accuracy on them."""
    from protoscope.data.shapes import labelled_set
    from protoscope.train.probe import fit_probes, pooled_features

    torch.manual_seed(1)
    model = build_model("resnet18", width=width, small_input=True)
    (train, train_labels), (test, test_labels) = labelled_set(64, 0, 16), labelled_set(32, 1, 16)
    x_train = pooled_features(model, "avgpool", train, torch.device("cpu"))
    x_test = pooled_features(model, "avgpool", test, torch.device("cpu"))
    accuracy = fit_probes(x_train, train_labels, x_test, test_labels, ["logreg"], seed=0)["logreg"]["test"]
    return {"features": torch.from_numpy(x_test), "accuracy": torch.tensor(accuracy)}


def engine_case(width: float) -> dict[str, torch.Tensor]:
    """The engine's input gradients on a channels-last net: its scores after a few Adam steps."""
    import protoscope

    torch.manual_seed(2)
    model = build_model("resnet18", width=width, small_input=True)
    found = protoscope.prototypes(model, "layer2", image_size=16, generator="pixel", pool_size=8,
                                  cma_generations=0, adam_steps=6, patience=0, precision="float32", device="cpu")
    return {"score": torch.as_tensor(found.score, dtype=torch.float32)}


def width_case() -> dict[str, torch.Tensor]:
    """The width study's supervised training at width 4 (conv and fc families): the trained weights."""
    from protoscope.nets.width import conv_family, fc_family
    from protoscope.train.width_study import train_supervised

    generator = torch.Generator().manual_seed(3)
    x, y = torch.rand(96, 1, 16, 16, generator=generator), torch.randint(0, 4, (96,), generator=generator)
    out = {}
    for family, nets in (("conv", conv_family(1, 4, [4])), ("fc", fc_family(256, 4, [4], 4000, max_depth=3))):
        torch.manual_seed(0)
        net = nets[4]
        for module in net.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        train_supervised(net, x.contiguous(memory_format=torch.channels_last) if family == "conv" else x, y, 2)
        out |= {f"{family}.{name}": p.detach().clone() for name, p in net.named_parameters()}
    return out


def run_cases(folder: Path) -> dict[str, torch.Tensor]:
    results = {}
    for width in WIDTHS:
        for case, values in (("train", train_case(width, folder / f"w{width}")), ("probe", probe_case(width)),
                             ("engine", engine_case(width))):
            results |= {f"{case}/{width}/{name}": value for name, value in values.items()}
    results |= {f"width/4/{name}": value for name, value in width_case().items()}
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--mkldnn-off", action="store_true", help="the reference: ATen's kernels, no oneDNN")
    p.add_argument("--no-route", action="store_true", help="protoscope's route around the bug turned off")
    args = p.parse_args()
    if args.mkldnn_off:
        torch.backends.mkldnn.enabled = False
    if args.no_route:
        import protoscope.nets.onednn as onednn

        onednn.onednn_runs_avx2 = lambda: False
    with tempfile.TemporaryDirectory() as folder:
        torch.save(run_cases(Path(folder)), args.out)
    print("done", file=sys.stderr)


if __name__ == "__main__":
    main()
