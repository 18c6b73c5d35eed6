"""Tuning curves of every unit of a layer, for a model in memory (issue #31; the method: `analyze/tuning.py`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .inputs import as_images, check_layer, engine_state, options, run_device


@dataclass(frozen=True)
class Tuning:
    """What `protoscope.tuning` returns: each index (units,) and each curve (steps, units), as the
    tuning stage stores them (`store/tuning.py` says what each means), and the steps of each axis."""

    indices: dict[str, np.ndarray]
    curves: dict[str, np.ndarray]
    steps: dict[str, np.ndarray]


def tuning(model, layer: str, images, *, device="auto", **settings) -> Tuning:
    """Hue, orientation, spatial frequency and contrast tuning of every unit of `layer`, read at its
    position (the centre cell of a map, a flat layer's vector), in one batched pass.

    `images`: the probe images painted in each hue (uint8, or float in [0, 1]; their size is the
    stimuli's); `settings`: the study's `tuning:` options (hues, orientations, frequencies, phases,
    contrasts, shuffles, batch_size). Writes nothing.
    """
    from ..analyze.tuning import at_position, indices, make_stimuli, measure
    from ..data.datasets import normalize
    from ..nets.layers import truncate
    from ..store.tuning import CURVES
    from ..specs import TuningSpec

    device = run_device([model], device)
    layer = check_layer(model, layer)
    probe, _ = as_images(images)
    probe = probe.float() / 255 if probe.dtype == torch.uint8 else probe.float()
    spec = options(TuningSpec, settings, "tuning", drop=("layers", "epochs", "images"))
    spec = spec.model_copy(update={"images": len(probe)})  # every image given is painted
    stimuli = make_stimuli(probe, probe.shape[-1], spec)
    with engine_state(model):
        net = truncate(model, [layer])

        def read(x):
            return at_position(net(normalize(x.to(device)))[layer])

        found = indices(measure(read, stimuli, spec.batch_size), stimuli, spec.shuffles)
    steps = {"hue": stimuli.hues, "orientation": stimuli.orientations, "frequency": stimuli.frequencies,
             "contrast": stimuli.contrasts}
    return Tuning({k: v for k, v in found.items() if k not in CURVES}, {k: found[k] for k in CURVES}, steps)
