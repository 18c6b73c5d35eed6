"""The site `protoscope report` writes, read back file by file and checked against the store."""

import shutil

import numpy as np
import pytest

from protoscope.store.activations import read_activations
from protoscope.store.alignment import read_result
from protoscope.store.arrays import ArrayStore
from site_helpers import cell, read_script, sheet_cell

pytestmark = pytest.mark.xdist_group("quick_demo")  # the quick demo's store, made once


@pytest.fixture(scope="module")
def demo(quick_demo):
    out, _ = quick_demo
    site = out / "site"
    return out, site, read_script(site / "data" / "index.js")


def _entry(index, run_name, layer_name):
    run = next(r for r in index["runs"] if r["name"] == run_name)
    return run, next(l for l in run["layers"] if l["name"] == layer_name)


def test_the_index_names_every_run_layer_and_epoch(demo):
    out, site, index = demo
    store = ArrayStore(out / "arrays.zarr")
    assert [r["name"] for r in index["runs"]] == ["clrjit-s0", "keepclr-s0", "clrjit-s1"]
    for run in index["runs"]:
        assert [l["name"] for l in run["layers"]] == store.layers(run["name"])
        for layer in run["layers"]:
            done = {(e, r) for i, e in enumerate(layer["epochs"]) for r in range(layer["repeats"]) if layer["done"][i][r]}
            assert done == store.done_jobs(run["name"], layer["name"])
    assert all((site / "figures" / name).is_file() for name in index["figures"]) and "probe_accuracy.png" in index["figures"]
    assert (site / "index.html").is_file() and (site / "site.js").is_file()


def test_sprite_cells_are_the_stored_prototypes_plain_and_masked(demo):
    out, site, index = demo
    store = ArrayStore(out / "arrays.zarr")
    run, layer = _entry(index, "keepclr-s0", "layer3")
    where = site / "img" / run["id"] / layer["id"]
    assert layer["cell"] == layer["image_size"]  # 32 px: kept whole
    for epoch in layer["epochs"]:
        for repeat in range(layer["repeats"]):
            stored = store.read_job("keepclr-s0", "layer3", epoch, repeat)["prototype"]
            mask = store.read_rf("keepclr-s0", "layer3", epoch)["rf_mask"]
            for unit in (0, 7, len(stored) - 1):
                plain = cell(where / f"e{epoch}_r{repeat}.png", unit, layer["columns"], layer["cell"])
                assert np.array_equal(plain, stored[unit])
                weights = np.clip(mask, 0, 1)[..., None] if mask.max() > 0 else 1.0
                expected = np.round(stored[unit] * weights + 128 * (1 - weights)).astype(np.uint8)
                masked = cell(where / f"e{epoch}_r{repeat}_m.png", unit, layer["columns"], layer["cell"])
                assert np.abs(masked.astype(int) - expected).max() <= 1


def test_unit_data_matches_the_store(demo):
    out, site, index = demo
    store = ArrayStore(out / "arrays.zarr")
    run, layer = _entry(index, "clrjit-s0", "layer2")
    units = read_script(site / "data" / run["id"] / layer["id"] / "units.js")
    acts = read_activations(out, "clrjit-s0", "layer2")
    for e, epoch in enumerate(units["epochs"]):
        score = store.read_job("clrjit-s0", "layer2", epoch, 0)["score"]
        np.testing.assert_allclose(np.array(units["score"][e][0], float), score, rtol=1e-3)
        per_epoch = read_script(site / "data" / run["id"] / layer["id"] / f"e{epoch}.js")
        values = acts.values[list(acts.epochs).index(epoch)]  # (images, units)
        for unit in (0, 5):
            top = per_epoch["top"][unit]
            assert np.allclose(np.sort(values[:, unit])[::-1][:len(top)], values[top, unit])  # the largest, in order
            assert sum(per_epoch["histogram"][unit]["counts"]) == len(values)
    with read_result(out / "align" / "track" / "clrjit-s0" / "layer2.nc") as track:
        assert units["identity_epoch"] == track["identity_epoch"].values.tolist()


def test_unit_data_carries_the_stored_trust_scores_and_the_overview_their_share(demo):
    import zarr

    from protoscope.store import MetricsTable

    out, site, index = demo
    run, layer = _entry(index, "keepclr-s0", "layer4")
    units = read_script(site / "data" / run["id"] / layer["id"] / "units.js")
    trust = zarr.open_group(str(out / "trust.zarr" / "keepclr-s0" / "layer4"), mode="r")
    for name in ("path_similarity", "robustness", "trustworthy"):
        stored = np.nanmean(np.asarray(trust[name][:]), axis=1)  # mean over repeats: (epoch, unit)
        shown = np.array(units["trust"][name], dtype=float)
        np.testing.assert_allclose(shown, stored, rtol=5e-3, atol=1e-3)  # the page keeps 3 significant digits
    table = next(t for t in index["tables"] if t["title"] == "Share of trustworthy prototypes")
    share = MetricsTable(out).read("trust")
    share = share[(share["metric"] == "trust_share") & (share["layer"] == "layer4") & (share["condition"] == "keepclr")]
    row = next(r for r in table["rows"] if r[:2] == ["layer4", "keepclr"])
    last = share[share["epoch"] == share["epoch"].max()]["value"].mean()
    assert row[-1] == pytest.approx(last, abs=1e-4)


def test_matched_units_are_the_alignment_s_partners_both_ways(demo):
    out, site, index = demo
    epoch_folder = next((out / "align").glob("epoch_*"))
    with read_result(epoch_folder / "clrjit-s0~clrjit-s1" / "layer3.nc") as ds:
        pairs = {int(a): int(b) for a, b in zip(ds["a"].values, ds["partner_bipartite"].values) if b >= 0}
    ids = {r["name"]: r["id"] for r in index["runs"]}
    layer_id = index["layers"]["layer3"]
    forward = read_script(site / "data" / ids["clrjit-s0"] / layer_id / "units.js")["partners"][ids["clrjit-s1"]]
    backward = read_script(site / "data" / ids["clrjit-s1"] / layer_id / "units.js")["partners"][ids["clrjit-s0"]]
    assert pairs and all(forward["unit"][a] == b and backward["unit"][b] == a for a, b in pairs.items())
    assert ids["keepclr-s0"] not in forward  # not aligned with it


def test_a_rerun_writes_nothing_and_a_lost_file_is_written_again(demo, tmp_path):
    from protoscope.demo import demo_study
    from protoscope.report.site import write_site

    out, _, index = demo
    shutil.copytree(out, tmp_path / "demo")
    study = demo_study(tmp_path / "demo", quick=True)
    assert write_site(study).written == 0
    run, layer = _entry(index, "clrjit-s1", "layer4")
    lost = tmp_path / "demo" / "site" / "img" / run["id"] / layer["id"] / "e1_r0.png"
    lost.unlink()
    result = write_site(study)
    assert lost.is_file() and result.written == 2  # that sheet and its masked twin (they are made together)


def test_a_layer_of_many_units_gets_a_sheet_per_chunk_of_units(demo, tmp_path, monkeypatch):
    """Chunks of 5 units (64 in use) over the quick demo's 64-unit layer4: unit u is cell u % 5 of the
    sheet ..._c<u // 5>.png (none for the first), plain and masked, at the layer's column count."""
    from protoscope.analyze.activations import stimulus_set
    from protoscope.demo import demo_study
    from protoscope.report.site import sprites, write_site

    out, _, _ = demo
    shutil.copytree(out, tmp_path / "demo", ignore=shutil.ignore_patterns("site"))
    monkeypatch.setattr(sprites, "CHUNK", 5)
    write_site(demo_study(tmp_path / "demo", quick=True))
    site = tmp_path / "demo" / "site"
    run, layer = _entry(read_script(site / "data" / "index.js"), "clrjit-s0", "layer4")
    assert (layer["chunk"], layer["columns"], layer["units"]) == (5, 3, 64)
    where = site / "img" / run["id"] / layer["id"]
    store = ArrayStore(out / "arrays.zarr")
    stored = store.read_job("clrjit-s0", "layer4", 2, 1)["prototype"]
    for unit in (0, 4, 5, 12, 63):
        chunk = f"_c{unit // 5}" if unit >= 5 else ""
        assert np.array_equal(cell(where / f"e2_r1{chunk}.png", unit % 5, 3, layer["cell"]), stored[unit])
        assert (where / f"e2_r1_m{chunk}.png").is_file()
    assert not (where / "e2_r1_c13.png").exists() and len(list(where.glob("e2_r1_c*.png"))) == 12
    probe = read_script(site / "data" / "index.js")["probe"]  # the stimulus images, chunked alike
    images = stimulus_set(demo_study(out, quick=True)).images.permute(0, 2, 3, 1).numpy()
    assert probe["chunk"] == 5 and len(list((site / "img").glob("stimuli_c*.png"))) == -(-len(images) // 5) - 1
    for k in (0, 7, len(images) - 1):
        assert np.array_equal(sheet_cell(site / "img" / "stimuli", k, probe), images[k])


def test_figures_are_drawn_again_only_when_the_store_changed(demo, tmp_path):
    from protoscope import stages
    from protoscope.demo import demo_study
    from protoscope.store import MetricsTable

    out, _, _ = demo
    shutil.copytree(out, tmp_path / "demo")
    study = demo_study(tmp_path / "demo", quick=True)
    figure = tmp_path / "demo" / "figures" / "probe_accuracy.png"
    stages.report(study, site=False)
    before = figure.stat().st_mtime_ns
    stages.report(study, site=False)
    assert figure.stat().st_mtime_ns == before  # nothing changed: nothing drawn
    table = MetricsTable(tmp_path / "demo")
    table.write("probe", "extra", table.read("probe").head(3))
    stages.report(study, site=False)
    assert figure.stat().st_mtime_ns > before


def test_report_and_serve_from_the_command_line(demo, tmp_path, capsys):
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from protoscope.cli import main
    from protoscope.study import builtin_study

    out, _, _ = demo
    shutil.copytree(out, tmp_path / "demo")
    store = tmp_path / "demo"
    shutil.rmtree(store / "site")
    assert main(["report", str(builtin_study("demo")), "--store", str(store)]) == 0
    assert f"site: {store / 'site' / 'index.html'}" in " ".join(capsys.readouterr().out.split())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "protoscope.cli", "serve", str(builtin_study("demo")),
                               "--store", str(store), "--port", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/data/index.js", timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.1)
        assert page == (store / "site" / "data" / "index.js").read_text()
    finally:
        server.terminate()
        server.wait(10)
    assert main(["serve", str(builtin_study("demo")), "--store", str(tmp_path / "empty")]) == 2
    assert "run `protoscope report" in capsys.readouterr().err


def test_the_probe_sheet_holds_the_images_the_activations_were_computed_on(demo):
    from protoscope.analyze.activations import stimulus_set
    from protoscope.demo import demo_study

    out, site, index = demo
    images = stimulus_set(demo_study(out, quick=True)).images.permute(0, 2, 3, 1).numpy()
    probe = index["probe"]
    assert probe["count"] == len(images) == len(probe["labels"])
    for k in (0, 17, len(images) - 1):
        assert np.array_equal(sheet_cell(site / "img" / "stimuli", k, probe), images[k])


def test_the_rf_square_holds_the_mask_and_is_left_out_when_the_field_fills_the_image():
    from protoscope.report.site.build import rf_box

    yy, xx = np.indices((32, 32))
    blob = np.exp(-((yy - 16) ** 2 + (xx - 15) ** 2) / (2 * 2.0 ** 2))
    y0, y1, x0, x1 = rf_box([blob], 32)
    assert y1 - y0 == x1 - x0 and y0 <= 16 - 4 and y1 > 16 + 4 and x0 <= 15 - 4 and x1 > 15 + 4
    assert (y1 - y0) < 16  # a small field: a small square
    wide = np.exp(-((yy - 16) ** 2 + (xx - 16) ** 2) / (2 * 12.0 ** 2))
    assert rf_box([wide], 32) is None and rf_box([], 32) is None


def test_wide_figures_are_scaled_for_the_site_and_copied_once(tmp_path):
    """The site's copy of a figure wider than WEB_WIDTH is scaled down (the store keeps the full one);
    an unchanged figure is not copied again, a redrawn one is."""
    import os

    from PIL import Image

    from protoscope.report.site.build import WEB_WIDTH, SiteResult, _figures

    figures = tmp_path / "store" / "figures"
    figures.mkdir(parents=True)
    Image.new("RGB", (3 * WEB_WIDTH, 900), "white").save(figures / "development_layer4.png")
    Image.new("RGB", (400, 300), "white").save(figures / "probe_accuracy.png")
    site = tmp_path / "site"
    result = SiteResult(site)
    assert _figures(tmp_path / "store", site, result) == ["development_layer4.png", "probe_accuracy.png"]
    assert result.written == 2
    assert Image.open(site / "figures" / "development_layer4.png").size == (WEB_WIDTH, 300)
    assert Image.open(site / "figures" / "probe_accuracy.png").size == (400, 300)
    noise = np.random.default_rng(0).integers(0, 255, (1300, 1300, 4), dtype=np.uint8)  # a heavy matrix figure
    Image.fromarray(noise, "RGBA").save(figures / "rsa_rdms_run.png")
    assert (figures / "rsa_rdms_run.png").stat().st_size > 1_000_000
    _figures(tmp_path / "store", site, SiteResult(site))
    assert Image.open(site / "figures" / "rsa_rdms_run.png").width == 1000
    again = SiteResult(site)
    _figures(tmp_path / "store", site, again)
    assert again.written == 0
    os.utime(figures / "probe_accuracy.png", ns=(1, 2))  # redrawn (another modification time)
    _figures(tmp_path / "store", site, again)
    assert again.written == 1
