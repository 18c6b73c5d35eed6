"""The served site follows `protoscope watch`: a new epoch appears in the slider without a reload, and
the page says how far training is (`report/site/live.py`, the live part of site.js).

The quick demo's site is copied and served over HTTP; the files a watch round writes are played
back: first the site with its last epoch not yet done and its whole-series results provisional, then
the full site with a new generation.
"""

import functools
import http.server
import shutil
import threading
import time
from pathlib import Path

import pytest

from protoscope.report.site.build import script
from site_helpers import CHROMIUM_ARGS, chromium_path, read_script

pytestmark = [pytest.mark.xdist_group("quick_demo"), pytest.mark.timeout(300)]
ARTIFACTS = Path(__file__).parents[2] / "out" / "test-artifacts" / "site"


@pytest.fixture
def served(quick_demo, tmp_path):
    """A copy of the demo's site on http://127.0.0.1:PORT/ (its index.js kept aside as `full`)."""
    site = tmp_path / "site"
    shutil.copytree(quick_demo[0] / "site", site)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield site, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


PROVISIONAL = ["prototype metrics", "RSA over training", "alignment and tracking", "trust", "atlases", "findings"]


def _live(generation: int, latest: int, last: int, finished: bool) -> str:
    runs = {"clrjit-s0": {"complete": latest + 1, "planned": last + 1, "latest": latest, "last": last,
                          "written": time.time() - 40, "finished": finished}}
    provisional = None if finished else {"through": {"clrjit-s0": latest}, "results": PROVISIONAL}
    return script("live", {"generation": generation, "runs": runs, "finished": finished,
                           "provisional": provisional, "waiting": []})


def test_a_new_epoch_appears_in_the_slider_without_a_reload(served):
    if chromium_path() is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; `make test` tries to)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    site, url = served
    full = (site / "data" / "index.js").read_text()
    index = read_script(site / "data" / "index.js")
    run = next(r for r in index["runs"] if r["name"] == "clrjit-s0")
    layer = run["layers"][0]
    epochs = [e for e, done in zip(layer["epochs"], layer["done"]) if any(done)]
    for entry in run["layers"]:  # training has not reached the last epoch yet
        entry["done"][entry["epochs"].index(epochs[-1])] = [False] * len(entry["done"][0])
    index["provisional"] = {"through": {"clrjit-s0": epochs[-2]}, "results": PROVISIONAL}  # a watch's site
    (site / "data" / "index.js").write_text(script("index", index))
    (site / "data" / "live.js").write_text(_live(1, epochs[-2], epochs[-1], False))
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page()
        problems = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(url + f"#/unit/clrjit-s0/{layer['name']}/0/{epochs[0]}")
        page.wait_for_selector("#live")
        assert page.get_attribute("#epoch-slider", "max") == str(len(epochs) - 2)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "watch_training.png"), full_page=True)
        banner = page.inner_text("#live")
        assert f"epoch {epochs[-2]} of {epochs[-1]}" in banner and "s ago" in banner
        assert "provisional until training ends: prototype metrics, RSA over training" in banner
        assert f"computed through epoch clrjit-s0 {epochs[-2]}" in page.inner_text("#trust-panel .provisional")
        page.evaluate("window.notReloaded = true")
        (site / "data" / "index.js").write_text(full)  # the watch's next round: the last epoch is done
        (site / "data" / "live.js").write_text(_live(2, epochs[-1], epochs[-1], True))
        page.wait_for_function(f"document.getElementById('epoch-slider')?.max === '{len(epochs) - 1}'", timeout=20000)
        assert page.evaluate("window.notReloaded === true")
        assert "training finished" in page.inner_text("#live")
        assert page.query_selector("main .provisional") is None and "provisional" not in page.inner_text("#live")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "watch_live.png"))
        browser.close()
    assert problems == []


def test_opened_from_disk_the_page_never_asks(served):
    """From file:// the page asks for no live.js, even where one lies, so it stays as it is."""
    if chromium_path() is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; `make test` tries to)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    site, _ = served
    (site / "data" / "live.js").write_text(_live(1, 1, 2, False))
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page()
        asked = []
        page.on("request", lambda request: asked.append(request.url))
        page.goto((site / "index.html").as_uri())
        page.wait_for_function("window.protoscope && window.protoscope.index !== null")
        page.wait_for_timeout(3500)  # longer than the served page's interval
        assert not any("live.js" in u for u in asked) and page.query_selector("#live") is None
        browser.close()


def test_the_generation_moves_with_checkpoints_provisional_results_and_the_end():
    """The page reloads its data when the generation changes: after a watch round's own results, again
    after its provisional refresh (same checkpoints), and when training ends."""
    from protoscope.report.site.live import live_status
    from protoscope.stages.watch import RunState

    training = {"a": RunState((0, 1, 2), frozenset({0, 1}), False)}
    seen = [live_status(training)["generation"],
            live_status(training, {"through": {"a": 1}, "results": PROVISIONAL})["generation"],
            live_status({"a": RunState((0, 1, 2), frozenset({0, 1, 2}), True)},
                        {"through": {"a": 1}, "results": PROVISIONAL})["generation"]]
    assert len(set(seen)) == 3
    assert live_status({"a": RunState((0, 1, 2), frozenset({0, 1, 2}), True)})["provisional"] is None
