"""The quick demo's site in a real browser: Debian's Chromium driven by Playwright, opened from disk.

Every test checks what the page shows against the store: the sprite file and cell behind each
image, the numbers in the text. Screenshots go to out/test-artifacts/site/ for a person to look at.
"""

import re
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

from protoscope.store.activations import read_activations
from protoscope.store.arrays import ArrayStore
from site_helpers import CHROMIUM_ARGS, chromium_path, read_script

pytestmark = pytest.mark.xdist_group("quick_demo")
ARTIFACTS = Path(__file__).parents[2] / "out" / "test-artifacts" / "site"


@pytest.fixture(scope="module")
def browser():
    if chromium_path() is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; `make test` tries to)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser):
    """open_page(site, hash) -> a page showing it; fails the test on any script error or dialog."""
    pages, problems = [], []

    def open_(site: Path, route: str = ""):
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
        page.goto((site / "index.html").as_uri() + route)
        page.wait_for_function("window.protoscope && window.protoscope.index !== null")
        pages.append(page)
        return page

    yield open_
    for page in pages:
        page.close()
    assert problems == []


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def demo(quick_demo):
    out, _ = quick_demo
    index = read_script(out / "site" / "data" / "index.js")
    return out, out / "site", index


def _ids(index, run, layer):
    return next(r["id"] for r in index["runs"] if r["name"] == run), index["layers"][layer]


def _shown_unit(page, selector: str) -> tuple[str, int]:
    """(sprite file, unit) of the sprite an element shows."""
    src, unit = page.eval_on_selector(selector, "node => [node.dataset.src, Number(node.dataset.unit)]")
    return src, unit


def test_overview_shows_runs_coverage_and_the_probe_table(demo, open_page):
    from protoscope.store import MetricsTable

    out, site, index = demo
    page = open_page(site)
    page.wait_for_selector("text=What is computed")
    assert page.locator("td.run-name").all_inner_texts() == ["clrjit-s0", "keepclr-s0", "clrjit-s1"]
    metrics = MetricsTable(out).read("probe")
    logreg = metrics[(metrics["metric"] == "probe_logreg_test") & (metrics["condition"] == "keepclr")]
    final = logreg[logreg["epoch"] == logreg["epoch"].max()]["value"].mean()
    row = page.locator("table[data-table^='Probe accuracy'] tr", has_text="keepclr").inner_text().split("\t")
    assert row[0] == "keepclr" and float(row[3]) == pytest.approx(final, abs=1e-4)  # condition, runs, init, final
    shot(page, "overview")


def test_layer_view_slider_sort_and_click(demo, open_page):
    out, site, index = demo
    run_id, layer_id = _ids(index, "clrjit-s0", "layer3")
    store = ArrayStore(out / "arrays.zarr")
    page = open_page(site, "#/layer/clrjit-s0/layer3/2/unit")
    page.wait_for_selector("#unit-grid a")
    units = store.settings("clrjit-s0", "layer3")["n_units"]
    assert page.locator("#unit-grid a").count() == units
    src, unit = _shown_unit(page, "#unit-grid a:first-child .sprite")
    assert (src, unit) == (f"img/{run_id}/{layer_id}/e2_r0.png", 0) and (site / src).is_file()
    page.locator("#epoch-slider").focus()
    page.keyboard.press("ArrowLeft")
    assert page.inner_text("#epoch-label") == "epoch 1"
    assert _shown_unit(page, "#unit-grid a:first-child .sprite")[0] == f"img/{run_id}/{layer_id}/e1_r0.png"
    assert page.evaluate("location.hash") == "#/layer/clrjit-s0/layer3/1/unit/0/plain"
    page.select_option("#repeat-select", "1")
    page.check("#masked")
    assert page.evaluate("location.hash") == "#/layer/clrjit-s0/layer3/1/unit/1/masked"
    page.reload()  # repeat and masked live in the address: a reload (or Back) keeps them
    page.wait_for_selector("#unit-grid a")
    assert page.input_value("#repeat-select") == "1" and page.is_checked("#masked")
    assert _shown_unit(page, "#unit-grid a:first-child .sprite")[0] == f"img/{run_id}/{layer_id}/e1_r1_m.png"
    page.select_option("#repeat-select", "0")
    page.uncheck("#masked")
    page.select_option("#sort-select", "score")
    score = store.read_job("clrjit-s0", "layer3", 1, 0)["score"]
    shown = [int(u) for u in page.locator("#unit-grid a").evaluate_all("nodes => nodes.map(n => n.dataset.unit)")]
    assert shown == list(np.argsort(-score, kind="stable"))  # highest score first
    shot(page, "layer_view")
    page.select_option("#sort-select", "robust")  # by trust: the stored robustness, mean over repeats
    robust = np.nanmean(np.asarray(zarr.open_group(str(out / "trust.zarr" / "clrjit-s0" / "layer3"), mode="r")
                                   ["robustness"][1]), axis=0)
    by_trust = [int(u) for u in page.locator("#unit-grid a").evaluate_all("nodes => nodes.map(n => n.dataset.unit)")]
    known = [u for u in by_trust if np.isfinite(robust[u])]
    assert known == by_trust[: len(known)]  # units without a score (silent) last
    assert np.all(np.diff(robust[known]) <= 1e-3)  # highest first (as rounded for the page)
    page.select_option("#sort-select", "colour")  # by tuning: the stored colour selectivity at that epoch
    colour = np.asarray(zarr.open_group(str(out / "tuning.zarr" / "clrjit-s0" / "layer3"), mode="r")
                        ["colour_selectivity"][1])
    by_colour = [int(u) for u in page.locator("#unit-grid a").evaluate_all("nodes => nodes.map(n => n.dataset.unit)")]
    known = [u for u in by_colour if np.isfinite(colour[u])]
    assert known == by_colour[: len(known)] and np.all(np.diff(colour[known]) <= 1e-3)
    page.select_option("#sort-select", "score")
    page.locator("#unit-grid a").nth(0).click()
    page.wait_for_selector("#unit-panels .proto")
    assert page.evaluate("location.hash") == f"#/unit/clrjit-s0/layer3/{shown[0]}/1"


def test_unit_page_from_a_stable_link_and_its_epoch_slider(demo, open_page):
    out, site, index = demo
    run_id, layer_id = _ids(index, "clrjit-s0", "layer2")
    store = ArrayStore(out / "arrays.zarr")
    acts = read_activations(out, "clrjit-s0", "layer2")
    page = open_page(site, "#/unit/clrjit-s0/layer2/3/2")
    page.wait_for_selector("#top-images .top-image")
    assert page.locator("#trust-panel .trust-chart polyline").count() == 3  # path, robustness, trustworthy
    assert page.inner_text("#trust-values").startswith("epoch 2: ")
    tuning = zarr.open_group(str(out / "tuning.zarr" / "clrjit-s0" / "layer2"), mode="r")
    assert page.locator("#tuning-panel .hue-chart circle").count() == 1 + tuning["hue"].shape[0]  # the rim, a dot per hue
    shown = re.search(r"colour selectivity ([-\d.e+]+)", page.inner_text("#tuning-values")).group(1)
    assert float(shown) == pytest.approx(float(tuning["colour_selectivity"][2][3]), rel=1e-2)
    shot(page, "unit_epoch2")
    protos = page.locator(".proto").evaluate_all(
        "nodes => nodes.map(n => [n.dataset.src, Number(n.dataset.unit), Number(n.dataset.repeat), Number(n.dataset.masked)])")
    assert protos == [[f"img/{run_id}/{layer_id}/e2_r{r}{'_m' if m else ''}.png", 3, r, m] for r in (0, 1) for m in (0, 1)]
    for epoch in (2, 1):
        if epoch == 1:
            page.keyboard.press("ArrowLeft")  # the page, not a control, has focus: arrows step the epoch
            page.wait_for_function("location.hash.endsWith('/3/1')")
            shot(page, "unit_epoch1")
        score = store.read_job("clrjit-s0", "layer2", epoch, 0)["score"][3]
        shown = float(page.inner_text(".score[data-repeat='0']").split(":")[1])
        assert shown == pytest.approx(score, rel=1e-3)
        top = page.locator("#top-images .top-image").evaluate_all("nodes => nodes.map(n => Number(n.dataset.image))")
        values = acts.values[list(acts.epochs).index(epoch)][:, 3]
        assert np.allclose(values[top], np.sort(values)[::-1][:len(top)])
    assert page.evaluate("location.hash") == "#/unit/clrjit-s0/layer2/3/1"


def test_switching_unit_run_and_following_the_matched_unit(demo, open_page):
    out, site, index = demo
    page = open_page(site, "#/unit/clrjit-s0/layer3/4/2")
    page.wait_for_selector("#unit-panels .proto")
    page.click("#next-unit")
    page.wait_for_function("location.hash === '#/unit/clrjit-s0/layer3/5/2'")
    units = read_script(site / "data" / _ids(index, "clrjit-s0", "layer3")[0] / index["layers"]["layer3"] / "units.js")
    partner = units["partners"][_ids(index, "clrjit-s1", "layer3")[0]]["unit"][5]
    if partner >= 0:
        page.click(".partner[data-run='clrjit-s1'] a.partner-link")
        page.wait_for_function(f"location.hash === '#/unit/clrjit-s1/layer3/{partner}/2'")
        page.wait_for_selector("#unit-panels .proto")
        assert page.inner_text("h1").endswith(f"unit {partner}")
    page.select_option("#run-select", "keepclr-s0")
    page.wait_for_function("location.hash.startsWith('#/unit/keepclr-s0/layer3/')")
    page.select_option("#layer-select", "layer1")
    page.wait_for_function("location.hash.startsWith('#/unit/keepclr-s0/layer1/')")
    assert "keepclr-s0" in page.inner_text("h1") and "layer1" in page.inner_text("h1")


def test_atlas_view_steps_through_its_epochs(demo, open_page):
    out, site, index = demo
    page = open_page(site, "#/atlas")
    page.wait_for_selector("#atlas-image")
    atlas = index["atlases"][0]
    first = atlas["epochs"][-1]["epoch"]
    assert page.get_attribute("#atlas-image", "src") == f"img/atlas/{atlas['run']}/{atlas['layer']}/e{first}.png"
    page.locator("#epoch-slider").focus()
    page.keyboard.press("Home")
    assert page.get_attribute("#atlas-image", "src") == f"img/atlas/{atlas['run']}/{atlas['layer']}/e0.png"
    assert page.locator("#atlas-density rect").count() == atlas["grid"] ** 2
    shot(page, "atlas")


def test_a_run_name_with_markup_renders_as_text(tmp_path, open_page):
    """A run called `<script>alert(1)<script>` and a layer store written by hand: the name shows as
    text everywhere, nothing runs (a dialog fails the test), and no element is made from it."""
    from protoscope.report.site import write_site
    from protoscope.study import load_study

    name = "<script>alert(1)<script><img src=x onerror=alert(2)>"
    (tmp_path / "checkpoints").mkdir()
    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump({"name": "<b>bold</b> study", "store": "store", "layers": ["layer1"],
                                          "runs": [{"name": name, "path": "checkpoints"}]}))
    store = ArrayStore(tmp_path / "store" / "arrays.zarr")
    store.ensure_layer(name, "layer1", epochs=[0, 1], repeats=1, units=4, image_size=8, latent_dim=2, steps=3)
    rng = np.random.default_rng(0)
    for epoch in (0, 1):
        store.write_job(name, "layer1", epoch, 0, prototype=rng.integers(0, 255, (4, 8, 8, 3), dtype=np.uint8),
                        score=rng.random(4), latent=rng.random((4, 2)), trace=rng.random((4, 3)),
                        silent=np.zeros(4, bool))
    site = write_site(load_study(study_file)).path
    page = open_page(site)
    page.wait_for_selector("td.run-name")
    assert page.inner_text("td.run-name") == name and page.inner_text("#study-name") == "<b>bold</b> study"
    page.goto((site / "index.html").as_uri() + "#/unit/" + page.evaluate(f"encodeURIComponent({name!r})") + "/layer1/2/1")
    page.wait_for_selector("#unit-panels .proto")
    assert name in page.inner_text("h1")
    assert page.locator("script:not([src])").count() == 1  # index.html's own start call
    assert page.locator("img[src='x'], b").count() == 0
    shot(page, "markup_name")


def test_a_prototype_is_shown_where_its_unit_looks_with_the_full_canvas_one_click_away(demo, open_page):
    """layer1's receptive field is a few pixels of the 32 px image: its square is the default view,
    enlarged; "full canvas" shows the whole image. layer4 sees all of it: no square, no toggle."""
    from protoscope.report.site.build import rf_box

    out, site, index = demo
    run = next(r for r in index["runs"] if r["name"] == "clrjit-s0")
    layer1 = next(layer for layer in run["layers"] if layer["name"] == "layer1")
    store = ArrayStore(out / "arrays.zarr")
    masks = [store.read_rf("clrjit-s0", "layer1", e)["rf_mask"] for e in layer1["rf"]]
    assert layer1["rf_box"] == rf_box(masks, 32) and layer1["rf_box"][1] - layer1["rf_box"][0] < 24
    page = open_page(site, "#/layer/clrjit-s0/layer1/2/unit")
    page.wait_for_selector("#unit-grid a")
    assert page.eval_on_selector("#unit-grid a:first-child .sprite", "n => n.dataset.view") == "rf"
    page.locator("#full-canvas").check()
    assert page.eval_on_selector("#unit-grid a:first-child .sprite", "n => n.dataset.view") == "full"
    page = open_page(site, "#/layer/clrjit-s0/layer4/2/unit")
    page.wait_for_selector("#unit-grid a")
    assert page.locator("#full-canvas").count() == 0
    assert page.eval_on_selector("#unit-grid a:first-child .sprite", "n => n.dataset.view") == "full"


def test_a_bad_address_says_what_is_missing(demo, open_page):
    """A run, layer or unit that does not exist is named as such, never shown as another one."""
    out, site, index = demo
    run = next(r for r in index["runs"] if r["layers"])
    units, layer, name = run["layers"][0]["units"], run["layers"][0]["name"], run["name"]
    for route, words in (("#/unit/nosuchrun/layer9/999/77", "No run named “nosuchrun”"),
                         (f"#/unit/{name}/layer9/3/1", "has no layer “layer9”"),
                         (f"#/unit/{name}/{layer}/{units + 136}/1", f"has {units} units"),
                         (f"#/unit/{name}/{layer}/abc", "no unit “abc”"),
                         ("#/layer/nosuchrun", "No run named")):
        page = open_page(site, route)
        page.wait_for_selector("#not-found")
        assert words in page.inner_text("#not-found"), route
        assert page.evaluate("location.hash") == route  # the address is left as it was asked
        assert page.query_selector("#unit-panels") is None and page.query_selector("#unit-grid") is None


def test_at_phone_width_nothing_runs_off_the_screen(demo, browser):
    """At 390 px the slider row wraps (its label and play button stay on screen), tables scroll inside
    themselves and atlas images shrink: the page never scrolls sideways."""
    out, site, index = demo
    run = next(r for r in index["runs"] if r["layers"])
    page = browser.new_page(viewport={"width": 390, "height": 844})
    for route in ("", f"#/unit/{run['name']}/{run['layers'][0]['name']}/0", f"#/layer/{run['name']}", "#/atlas"):
        page.goto((site / "index.html").as_uri() + route)
        page.wait_for_function("window.protoscope && window.protoscope.index !== null")
        page.wait_for_timeout(300)
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= 390, f"{route or 'overview'}: the page is {wide} px wide at a 390 px screen"
        if page.query_selector("#epoch-slider"):
            right = page.evaluate("Math.max(...[...document.querySelectorAll('.slider > *')].map((n) => "
                                  "n.getBoundingClientRect().right))")
            assert right <= 390, f"{route}: the slider row ends at {right} px"
    page.close()


def test_a_chunked_layer_shows_each_unit_from_its_chunk(demo, open_page, tmp_path, monkeypatch):
    """Sheets of 5 units (64 in use) over the quick demo: the layer view shows every unit from the sheet
    of its chunk at its cell there, the unit page's four prototypes and top images likewise."""
    import shutil

    from protoscope.demo import demo_study
    from protoscope.report.site import sprites, write_site
    from site_helpers import sheet_cell

    out, _, _ = demo
    shutil.copytree(out, tmp_path / "demo", ignore=shutil.ignore_patterns("site"))
    monkeypatch.setattr(sprites, "CHUNK", 5)
    write_site(demo_study(tmp_path / "demo", quick=True))
    site = tmp_path / "demo" / "site"
    index = read_script(site / "data" / "index.js")
    run_id, layer_id = _ids(index, "clrjit-s0", "layer3")
    page = open_page(site, "#/layer/clrjit-s0/layer3/2/unit")
    page.wait_for_selector("#unit-grid a")
    shown = page.locator("#unit-grid a .sprite").evaluate_all("ns => ns.map(n => [n.dataset.src, Number(n.dataset.unit)])")
    assert shown == [[f"img/{run_id}/{layer_id}/e2_r0{f'_c{u // 5}' if u >= 5 else ''}.png", u % 5] for u in range(len(shown))]
    page = open_page(site, "#/unit/clrjit-s0/layer3/12/2")
    page.wait_for_selector("#top-images .top-image")
    protos = page.locator(".proto").evaluate_all("ns => ns.map(n => [n.dataset.src, Number(n.dataset.unit)])")
    assert protos == [[f"img/{run_id}/{layer_id}/e2_r{r}{'_m' if m else ''}_c2.png", 2] for r in (0, 1) for m in (0, 1)]
    probe = index["probe"]
    for node in page.locator("#top-images .top-image").evaluate_all("ns => ns.map(n => [n.dataset.src, Number(n.dataset.unit), Number(n.dataset.image)])"):
        src, at, image = node
        assert (src, at) == (f"img/stimuli{f'_c{image // 5}' if image >= 5 else ''}.png", image % 5)
        assert np.array_equal(sheet_cell(site / "img" / "stimuli", image, probe),
                              sheet_cell(out / "site" / "img" / "stimuli", image, read_script(out / "site" / "data" / "index.js")["probe"]))
