"""The tuning stage on the quick demo: every unit of every layer at every epoch, the same numbers as
`protoscope.tuning` on the same checkpoint, and the figure and findings rows that read them."""

import numpy as np
import pytest

import protoscope
from protoscope.demo import demo_study
from protoscope.errors import UserError
from protoscope.store.tuning import CURVES, INDICES, tuning_values

pytestmark = pytest.mark.xdist_group("quick_demo")


def test_the_stage_stores_what_the_api_computes_on_the_same_checkpoint(quick_demo):
    from protoscope.analyze.activations import stimulus_set
    from protoscope.analyze.tuning import spread
    from protoscope.nets.checkpoints import load_into
    from protoscope.nets.models import run_model

    store, _ = quick_demo
    study = demo_study(store, quick=True)
    for layer in study.layers:
        ds = tuning_values(study, "keepclr-s0", layer)
        assert list(ds["epoch"].values) == [0, 1, 2] and bool(ds["done"].values.all())
        assert set(INDICES) | set(CURVES) <= set(ds.data_vars)
    run = study.run("keepclr-s0")
    model = load_into(run_model(run), store / "runs" / "keepclr-s0" / "epoch_002.safetensors")
    probe = spread(stimulus_set(study).images, study.tuning.images)
    found = protoscope.tuning(model, "layer3", probe, device="cpu")
    stored = tuning_values(study, "keepclr-s0", "layer3").sel(epoch=2)
    for name, values in {**found.indices, **found.curves}.items():
        np.testing.assert_allclose(values, stored[name].values, rtol=1e-4, atol=1e-5, err_msg=name)
    with pytest.raises(UserError, match="no option 'hue'"):
        protoscope.tuning(model, "layer3", probe, hue=12)


def test_the_findings_ask_the_demo_question_with_tuning(quick_demo):
    from protoscope.report.findings import findings
    from protoscope.store import MetricsTable

    store, said = quick_demo
    table = findings(MetricsTable(store).read(), ["layer1", "layer2", "layer3", "layer4"])
    rows = table[table["finding"].str.startswith("tuning:")]
    assert len(rows) == 2 and rows["margin"].notna().all()
    assert "tuning: keepclr's deep" in said  # the demo prints them
    assert (store / "figures" / "tuning_over_training.png").is_file()
