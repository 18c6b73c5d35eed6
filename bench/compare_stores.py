"""Two stores, result by result: what `protoscope.store.compare.differences` finds between them.

The check behind "a refactor changes no result": run the same study with the code before and
after (e.g. `protoscope demo --quick --out A` on each), then compare. Figures and wall times are
not results and are left out; the site is compared file by file, so a changed label shows there.

    python bench/compare_stores.py BEFORE AFTER [BEFORE2 AFTER2 ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from protoscope.store.compare import differences, leftovers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stores", nargs="+", type=Path, help="pairs of stores: before after [before after ...]")
    args = parser.parse_args(argv)
    if len(args.stores) % 2:
        parser.error("give the stores in pairs: before after")
    total = 0
    for before, after in zip(args.stores[::2], args.stores[1::2]):
        found = differences(before, after)
        total += len(found)
        print(f"differences({before}, {after}): {len(found)}")
        for line in found:
            print(f"  {line}")
        print(f"leftovers({after}): {len(leftovers(after))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
