#!/usr/bin/env python
"""The documentation's code blocks: how many the tests run, and how many are marked not runnable.

Counts the fenced blocks of docs/**/*.md, README.md and bench/README.md (the benchmarks page) by language, and the tutorial notebook's code
cells. The tests run every `python` and `yaml` block (the root conftest.py, with Sybil) unless a
`<!-- skip: next "why" -->` mark stands above it, and fail on an unmarked block of any other
language; `text` blocks are listings. The notebook runs whole in tests/docs/test_pages.py.

    python bench/docs_blocks.py > bench/results/docs_blocks.txt
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[1]
SKIP = re.compile(r'<!--\s*skip:\s*next\s+"([^"]*)"\s*-->\s*$')


def blocks(page: Path):
    """(language, skip reason or None) per fenced block of a page."""
    lines = page.read_text().splitlines()
    for token in MarkdownIt().parse(page.read_text()):
        if token.type != "fence":
            continue
        above = next((lines[i] for i in range(token.map[0] - 1, -1, -1) if lines[i].strip()), "")
        mark = SKIP.search(above)
        yield token.info.strip() or "(none)", mark.group(1) if mark else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    pages = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md", ROOT / "bench" / "README.md"]
    run, skipped, listings, reasons = Counter(), Counter(), Counter(), []
    for page in pages:
        for language, reason in blocks(page):
            if language == "text":
                listings[language] += 1
            elif reason is not None:
                skipped[language] += 1
                reasons.append(f"{page.relative_to(ROOT)}: {reason}")
            else:
                run[language] += 1
    notebook = json.loads((ROOT / "docs" / "tutorial.ipynb").read_text())
    cells = sum(cell["cell_type"] == "code" for cell in notebook["cells"])
    print(f"pages: {len(pages)} (docs/**/*.md, README.md and bench/README.md)")
    for language in sorted(set(run) | set(skipped)):
        print(f"{language:8s} run by the tests: {run[language]:3d}   marked not runnable: {skipped[language]:3d}")
    print(f"text listings (not code): {sum(listings.values())}")
    print(f"tutorial notebook: {cells} code cells, run whole by tests/docs/test_pages.py")
    print("why each marked block is not run:")
    for line in reasons:
        print(f"  {line}")
    print(f"code blocks run by the tests: {sum(run.values()) + cells} ({sum(run.values())} blocks + {cells} notebook "
          f"cells); marked not runnable: {sum(skipped.values())}")


if __name__ == "__main__":
    main()
