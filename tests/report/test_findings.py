"""The findings table on hand-made metrics whose margins are known."""

import pandas as pd
import pytest

from protoscope.report.findings import findings
from protoscope.store.metrics import tidy

LAYERS = ["layer1", "layer2"]


def _rows():
    rows = []
    for run, condition, init, final in (("c0", "clrjit", 0.40, 0.62), ("c1", "clrjit", 0.40, 0.58), ("k0", "keepclr", 0.40, 0.35)):
        rows += [dict(run=run, condition=condition, epoch=0, metric="probe_logreg_test", value=init),
                 dict(run=run, condition=condition, epoch=4, metric="probe_logreg_test", value=final)]
        for layer, sep in (("layer1", 0.01), ("layer2", 0.30 if condition == "clrjit" else 0.05)):
            rows += [dict(run=run, condition=condition, epoch=4, layer=layer, metric="rsa_separation", space=c, value=sep)
                     for c in ("a", "b", "mean")]
            rows.append(dict(run=run, condition=condition, epoch=4, layer=layer, metric="rsa_separation_chance",
                             space="p99", value=0.02))
        for epoch, (r1, r2) in enumerate(((0.5, 0.2), (0.95, 0.5), (0.97, 0.92), (0.99, 0.95), (1.0, 1.0))):
            rows += [dict(run=run, condition=condition, epoch=epoch, layer="layer1", metric="rsa_vs_final_pearson", value=r1),
                     dict(run=run, condition=condition, epoch=epoch, layer="layer2", metric="rsa_vs_final_pearson", value=r2)]
        share = (0.1, 0.5 if run == "c0" else 0.3) if condition == "clrjit" else (0.1, 0.2)
        rows += [dict(run=run, condition=condition, epoch=e, layer="layer2", repeat=r, metric="trust_share", value=v)
                 for e, v in zip((0, 4), share) for r in (0, 1)]
        cosine, mse = ((0.30, 0.45), (0.02, 0.01)) if condition == "clrjit" else ((0.30, 0.30), (0.02, 0.02))
        rows += [dict(run=run, condition=condition, epoch=e, layer="layer2", space="pixel", metric=m, value=v[i])
                 for i, e in enumerate((0, 4)) for m, v in (("diversity_cosine", cosine), ("diversity_mse", mse))]
    rows += [dict(run="c0~c1", condition="clrjit", epoch=4, layer=layer, metric=m, value=v)
             for layer, b, s in (("layer1", 0.6, 0.7), ("layer2", 0.5, 0.49))
             for m, v in (("align_corr_bipartite_mean", b), ("align_corr_semi_mean", s))]
    rows += [dict(run=f"conv-w{w}-s0", condition="conv", layer="conv", space=str(w), metric=m, value=v)
             for w, new, orig in ((2, 0.1, 0.5), (4, 0.3, 0.90), (64, 0.5, 0.92))  # width 2: not at the level
             for m, v in (("width_new_accuracy", new), ("width_original_accuracy", orig))]
    return tidy(rows)


def test_each_finding_has_the_margin_it_should():
    table = findings(_rows(), LAYERS).set_index("finding")
    margin = table["margin"]
    assert margin["probe: clrjit final − init ≥ 0.10"] == pytest.approx(0.20 - 0.10)
    assert margin["probe: keepclr final − init ≤ 0"] == pytest.approx(0.05)
    assert margin["RSA: layer2 separation clrjit > keepclr"] == pytest.approx(0.25)
    assert margin["RSA: layer2 separation under clrjit above chance"] == pytest.approx(0.30 - 0.02)
    assert table.loc["RSA: layers settle early to deep (clrjit, RDM r ≥ 0.9 with its last)", "value"] == "layer1@1 layer2@2"
    assert margin["alignment: semi ≥ bipartite at every layer"] == pytest.approx(-0.01, abs=1e-6)  # layer2 breaks it
    assert not table.loc["alignment: semi ≥ bipartite at every layer", "holds"]
    assert margin["prototypes: layer2 diversity grows under clrjit"] == pytest.approx(0.5)  # cosine, not mse
    assert table.loc["prototypes: layer2 diversity grows under clrjit", "value"] == "+50% (mse -50%)"
    assert margin["prototypes: layer2 diversity grows more under clrjit than keepclr"] == pytest.approx(0.5)
    assert margin["trust: layer2 prototypes become trustworthy with training (clrjit)"] == pytest.approx(0.4 - 0.1)
    assert margin["trust: layer2 share trustworthy at the last epoch, clrjit > keepclr"] == pytest.approx(0.4 - 0.2)
    width = "width (conv): new task rises with width at flat original accuracy (within 0.05)"
    assert margin[width] == pytest.approx(0.2) and table.loc[width, "holds"]


def test_missing_metrics_leave_their_findings_out():
    assert findings(tidy([]), LAYERS).empty
    only_probe = _rows()
    only_probe = only_probe[only_probe["metric"] == "probe_logreg_test"]
    assert list(findings(only_probe, LAYERS)["finding"]) == ["probe: clrjit final − init ≥ 0.10", "probe: keepclr final − init ≤ 0"]
