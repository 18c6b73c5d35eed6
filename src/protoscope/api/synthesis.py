"""Prototypes and receptive fields of a model in memory: the engine and the maps as `evolve` makes them."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable

from ..errors import UserError
from ..synth.engine import EngineConfig, Prototypes
from .inputs import (as_generator, as_images, as_models, check_layer, conv_units, engine_state, layer_shape, options,
                     run_device)

if TYPE_CHECKING:  # receptive.py pulls in torchvision's transforms: imported when first used
    from ..synth.receptive import ReceptiveField


def prototypes(model, layer: str, units=None, *, image_size: int | None = None, generator="fourier",
               generator_options: dict | None = None, objective: str = "centre", crop: bool = True, seed: int = 0,
               device="auto", precision: str = "auto", config: EngineConfig | None = None, natural=None,
               on_phase: Callable[[str, int], None] | None = None, **engine) -> Prototypes | list[Prototypes]:
    """An image that drives each unit (channel) of `layer` as hard as it can, all units in one batched run.

    The engine of `protoscope evolve`, run the same way (`synth/layer.py`): a shared pool of random
    latents, CMA-ES for units still silent, then batched Adam; the forward pass stops at `layer`,
    sees only the input region of the studied unit (`crop`), and the search phases climb the
    layer's pre-ReLU value, so units silent behind a ReLU still get a signal.

    - `model`: an `nn.Module`, or a list of them (checkpoints of one architecture): each gets the
      same `seed`, as every epoch of a study does, so differences come from the weights;
    - `units`: channel indices (default: every channel);
    - `image_size`: default the generator's (96 for a generator given by name);
    - `generator`: "fourier" (default), "pixel", "deepsim-fc6" (`generator_options`, e.g.
      `{"weights_path": ...}`), or your own `protoscope.synth.generators.Generator`;
    - `objective`: "centre" (the channel at the map cell whose receptive field is centred in the
      image; `stats["position"]` says which, and whether any is) or "mean";
    - `device`: "auto" is wherever the model is; a model elsewhere is an error, never moved;
    - `precision`: "auto" (bf16 where the hardware does it natively), "bf16" or "float32";
    - `natural`: natural images (a stimulus set) scored with the random pool, so no unit one of them
      excites is left silent (the study's `synth.natural_starts`); the prior must encode images;
    - `**engine`: `EngineConfig` fields (`pool_size`, `cma_generations`, `adam_steps`, `adam_lr`,
      `patience`, `batch_size`, `memory_gb`, ...), or a whole `config=EngineConfig(...)`.

    Returns `Prototypes` (`images` uint8 (U, S, S, 3), `score` (U,), `latent` (U, D), `trace`,
    `silent` (U,), `stats`), or a list of them for a list of models. Writes nothing; `show()` draws them.
    """
    from ..runtime import use_bf16
    from ..synth.layer import OBJECTIVES, layer_prototypes, natural_starts, prepare

    models, several = as_models(model, "prototypes", "evolve")
    device = run_device(models, device)
    if objective not in OBJECTIVES:
        raise UserError(f"Unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}.")
    base = dataclasses.asdict(config) if config is not None else {}
    config = options(EngineConfig, {**base, **engine}, "prototypes")
    bf16 = use_bf16(device, precision)
    gen, size = as_generator(generator, generator_options, image_size, device)
    chosen = [conv_units(layer_shape(m, check_layer(m, layer), (size, size), device), layer, units) for m in models]
    found = None if natural is None else as_images(natural)[0]
    starts = None if found is None else natural_starts(gen, found, len(found))
    results = []
    for m, channels in zip(models, chosen):
        with engine_state(m):
            prepared = prepare(m, layer, size, objective, crop)
            result = layer_prototypes(prepared, gen, channels, seed=seed, config=config, device=device,
                                      bf16=bf16, on_phase=on_phase, starts=starts)
            if prepared.position is not None:
                result.stats["position"] = prepared.position.describe(layer)
            results.append(result)
    return results if several else results[0]


def receptive_field(model, layer: str, image_size: int, per_unit: bool = False, *, samples: int = 500,
                    seed: int = 0, crop: bool = True, device="auto") -> ReceptiveField | list[ReceptiveField]:
    """Where in the image the centre unit of `layer` looks: the effective receptive field, as `evolve` stores it.

    The gradient of the centre position's mean over channels (the seed's choice; with `per_unit`,
    of each channel too) for `samples` uniform-noise images, squared and summed over colour,
    averaged; then a rotated 2-D Gaussian fitted to it, whose normalized form is the mask
    prototypes are compared under. `crop` computes only the pixels that can reach the centre
    unit (the same map, faster). A list of models gives one result each, from the same noise.

    Returns `ReceptiveField`: `map` and `mask` (H, W), `fit` (the Gaussian: centre, sigmas,
    angle), and `unit_maps` / `unit_masks` (U, H, W) with `per_unit`. Writes nothing.
    """
    from ..synth.receptive import measure_receptive_field

    models, several = as_models(model, "receptive_field", "evolve")
    device = run_device(models, device)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or samples < 1:
        raise UserError(f"image_size must be an integer and samples >= 1; got {image_size!r} and {samples!r}.")
    for m in models:
        conv_units(layer_shape(m, check_layer(m, layer), (image_size, image_size), device), layer, None)
    results = []
    for m in models:
        with engine_state(m):  # frozen and channels-last, as `evolve` measures it: the same numbers
            results.append(measure_receptive_field(m, layer, image_size, samples=samples, per_unit=per_unit,
                                                   seed=seed, device=device, plan="auto" if crop else None))
    return results if several else results[0]
