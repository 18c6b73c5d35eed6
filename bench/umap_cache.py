"""What umap-learn's kernels cost a new process, compiled each time (as umap-learn ships them) or
loaded from numba's on-disk cache (`protoscope.analyze.atlas.import_umap`).

Each measurement is a fresh one-thread process that lays out a small atlas both ways (one UMAP of
all epochs, then AlignedUMAP): "first" in an empty cache folder (compiling and, with the cache,
writing it), "next" in the same folder again.

    python bench/umap_cache.py > bench/results/umap_cache.txt
    python bench/umap_cache.py --quick      # one pair of processes
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

CHILD = """
import sys
import numpy as np
if sys.argv[1] == "plain":
    import umap  # imported first, as umap-learn ships: protoscope's import then leaves it as it is
from protoscope.analyze.atlas import aligned_layout, shared_layout
rng = np.random.default_rng(0)
blocks = [rng.random((60, 16), dtype=np.float32) for _ in range(2)]
shared_layout(blocks, n_neighbors=15, min_dist=0.1, seed=0)
aligned_layout(blocks, n_neighbors=15, min_dist=0.1, seed=0)
"""


def seconds(how: str, cache: str) -> float:
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_CACHE_DIR=cache, PYTHONWARNINGS="ignore")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", CHILD, how], env=env, check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="one repeat")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    print("seconds of a fresh process: import, one UMAP and one AlignedUMAP of 2 x 60 points (one thread)")
    print(f"{'':>8} {'first':>8} {'next':>8}")
    for how in ("plain", "cached"):
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as cache:
                first, after = seconds(how, cache), seconds(how, cache)
            print(f"{how:>8} {first:8.1f} {after:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
