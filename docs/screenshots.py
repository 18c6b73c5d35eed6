"""Screenshots of the demo's report for the README: the overview (with the share of trustworthy
prototypes), the layer view (by rate of change, and by trust), a unit page at two epochs (with its
trust panel), the atlas. Debian's Chromium, headless, through Playwright.

    .venv/bin/python docs/screenshots.py --site out/demo/site
    .venv/bin/python docs/screenshots.py --site out/vit-shapes/site \
        --view vit_unit='#/unit/clrjit-s0/encoder.layers.encoder_layer_3/5/6'
    make docs && .venv/bin/python docs/screenshots.py --site site \
        --view docs_home=index.html --view docs_method=methods/rsa.html    # the documentation site

A route is the report's hash route, or a page of the site (a path); a docs_* view is one screen, not
the whole page.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "report"))

VIEWS = {
    "overview": "#/",
    "layer_view": "#/layer/clrjit-s0/layer3/16/change",
    "layer_view_trust": "#/layer/clrjit-s0/layer2/16/trust",
    "unit_epoch_1": "#/unit/clrjit-s0/layer4/9/1",  # not trustworthy at epoch 1, trustworthy at 16
    "unit_epoch_16": "#/unit/clrjit-s0/layer4/9/16",
    "unit_layer1": "#/unit/clrjit-s0/layer1/3/16",  # the receptive-field square, enlarged
    "atlas": "#/atlas/clrjit-s0/layer3/16",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--site", type=Path, default=Path("out/demo/site"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "screenshots")
    parser.add_argument("--view", action="append", default=[], metavar="NAME=ROUTE",
                        help="only these views (default: the demo's five)")
    args = parser.parse_args()
    views = dict(view.split("=", 1) for view in args.view) if args.view else VIEWS
    from playwright.sync_api import sync_playwright

    from site_helpers import CHROMIUM_ARGS, chromium_path

    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        for name, route in views.items():
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            where = route if route and not route.startswith("#") else "index.html"
            page.goto((args.site.resolve() / where).as_uri() + (route if route.startswith("#") else ""))
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(800)
            page.screenshot(path=str(args.out / f"{name}.png"), full_page=name != "layer_view" and not name.startswith("docs_"))
            page.close()
            print(args.out / f"{name}.png")
        browser.close()


if __name__ == "__main__":
    main()
