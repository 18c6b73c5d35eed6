"""The synth package is split one concept per module; the old import paths must keep every name."""

from __future__ import annotations

import importlib

import pytest

# What each module offered before the split (its __all__, and the private names other code used).
OLD_NAMES = {
    "protoscope.synth.generators": ["Generator", "FourierGenerator", "PixelGenerator", "DeePSimFC6", "ModuleGenerator",
                                    "make_generator", "sized_generator", "GENERATORS", "_normalise_keys"],
    "protoscope.synth.receptive": ["rf_map", "GaussianFit", "fit_gaussian", "gaussian_mask", "rf_mask",
                                   "centre_input_box", "CropPlan", "crop_plan", "centre_activation", "ReceptiveField",
                                   "measure_receptive_field", "centre_index"],
    "protoscope.synth.objectives": ["Objective", "ChannelCentre", "ChannelMean", "Neuron", "Direction",
                                    "DirectionCosine", "LinearCombination", "centre_index", "gather_units", "as_units"],
}


@pytest.mark.parametrize("module", sorted(OLD_NAMES))
def test_old_import_paths_keep_every_name(module: str) -> None:
    mod = importlib.import_module(module)
    missing = [name for name in OLD_NAMES[module] if not hasattr(mod, name)]
    assert not missing
    assert set(mod.__all__) <= set(dir(mod))


def test_re_exports_are_the_same_objects() -> None:
    from protoscope.synth import crop, gaussian, objective_algebra, objectives, receptive
    from protoscope.synth.generators import GENERATORS, FourierGenerator, fourier, registry

    assert receptive.crop_plan is crop.crop_plan and receptive.CropPlan is crop.CropPlan
    assert receptive.fit_gaussian is gaussian.fit_gaussian
    assert objectives.Objective is objective_algebra.Objective
    assert FourierGenerator is fourier.FourierGenerator and GENERATORS is registry.GENERATORS
