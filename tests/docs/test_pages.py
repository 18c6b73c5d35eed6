"""The documentation site: built strictly, every code block accounted for, the tutorial notebook run.

The blocks themselves run through Sybil (the root conftest.py); this module checks what Sybil cannot
see — a fence with no language would be invisible to it — and builds the site the way `make docs` does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md", ROOT / "bench" / "README.md"]
QUIET = {"NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}


def fences(page: Path):
    return [t for t in MarkdownIt().parse(page.read_text()) if t.type == "fence"]


def test_every_code_block_names_its_language():
    """Sybil runs a block by its language; a block without one would pass unseen, neither run nor marked."""
    bare = [f"{page.relative_to(ROOT)}:{token.map[0] + 1}" for page in PAGES for token in fences(page)
            if not token.info.strip()]
    assert not bare, f"fenced blocks without a language (python, yaml, bash, text, ...): {bare}"


def build(config: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(out)],
                          capture_output=True, text=True, env=dict(os.environ, **QUIET), cwd=config.parent)


def test_the_site_builds_strictly(tmp_path):
    """`make docs`: no warning at all (mkdocs.yml sets strict), and every page of the nav is there."""
    done = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "WARNING" not in done.stderr, done.stderr[-3000:]
    for page in ("index.html", "reference/study-file.html", "reference/cli.html", "reference/api.html",
                 "benchmarks.html", "tutorial.html", "methods/prototypes.html"):
        assert (tmp_path / "site" / page).is_file(), page
    cli = (tmp_path / "site" / "reference" / "cli.html").read_text()
    study = (tmp_path / "site" / "reference" / "study-file.html").read_text()
    api = (tmp_path / "site" / "reference" / "api.html").read_text()
    assert "protoscope evolve" in cli and "--executor" in cli     # generated from the Typer app
    assert "adam_steps" in study and "natural_starts" in study    # from the pydantic models
    assert "receptive_field" in api and "Checkpointer" in api     # from the docstrings
    assert not dead_links(tmp_path / "site")


def dead_links(site: Path) -> list[str]:
    """Relative links of the built pages that lead nowhere. mkdocs checks the Markdown pages' links; this
    also covers what it does not read, the notebook's."""
    import re
    from urllib.parse import unquote, urlsplit

    dead = []
    for page in site.rglob("*.html"):
        for target in re.findall(r'(?:href|src)="([^"#?]+)', page.read_text()):
            if urlsplit(target).scheme or target.startswith(("/", "mailto:")):
                continue
            if not (page.parent / unquote(target)).exists():
                dead.append(f"{page.relative_to(site)} -> {target}")
    return dead


@pytest.mark.parametrize("breakage", ["a link to no page", "a reference to no object"])
def test_a_broken_page_fails_the_build(tmp_path, breakage):
    """The build the tests run fails on the weaknesses it guards against (a copy of the docs, broken)."""
    for name in ("docs", "mkdocs.yml"):
        (shutil.copytree if name == "docs" else shutil.copy)(ROOT / name, tmp_path / name)
    for name in ("src", "bench"):
        (tmp_path / name).symlink_to(ROOT / name)
    page = tmp_path / "docs" / "concepts" / "store.md"
    text = ("\nSee [the page that is not there](../methods/no-such-page.md).\n" if breakage == "a link to no page"
            else "\n::: protoscope.api.no_such_function\n")
    page.write_text(page.read_text() + text)
    done = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0
    assert ("no-such-page" if breakage == "a link to no page" else "no_such_function") in done.stderr


def test_the_tutorial_notebook_runs(tmp_path):
    """docs/tutorial.ipynb from top to bottom, in a fresh kernel: a tiny study trained, probed, evolved,
    compared and reported."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(ROOT / "docs" / "tutorial.ipynb", as_version=4)
    client = NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    # one thread, as every test here: OpenMP threads spinning beside the other worker's slowed it 6x
    client.execute(env=dict(os.environ, OMP_NUM_THREADS="1"))
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    shown = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(shown) == 2  # the prototypes grid and the probe figure
    tables = "".join(o.get("data", {}).get("text/plain", "") for o in outputs)
    assert "clrjit-s0" in tables and "keepclr-s0" in tables


def test_the_readmes_links_lead_somewhere():
    """The README is read on its own (GitHub, a clone): its relative links and pictures name real files."""
    targets = []
    for token in MarkdownIt().parse((ROOT / "README.md").read_text()):
        for child in token.children or []:
            target = child.attrs.get("href") or child.attrs.get("src")
            if target and "://" not in target and not target.startswith("#"):
                targets.append(target.split("#")[0])
    assert len(targets) > 10
    assert not [t for t in targets if not (ROOT / t).exists()]
