"""Regenerate the NAS-Bench-101 cell cache (``nasbench101/cells.npz`` in rfsearch's user
cache directory, ``$RFSEARCH_CACHE`` or ``~/.cache/rfsearch``): every unique cell.

Run: python datasets/nasbench101/make_cells.py   (about 40 s on 2 CPU cores)

Enumerates the cells as google-research/nasbench's scripts/generate_graphs.py does
(2..7 vertices, at most 9 edges, 3 ops), keeps one per isomorphism class (423,624) and
stores its adjacency matrix, op labels and official module hash
(``graph_util.hash_module``). ``rfsearch search nasbench101`` reads this cache, and
writes it on first use when it is missing (about 10 MB).
"""

from __future__ import annotations

import time

from rfsearch.spaces import nasbench101


def main() -> None:
    t0 = time.perf_counter()
    nasbench101.cache_file().unlink(missing_ok=True)
    data = nasbench101.cells()
    print(f"wrote {len(data['hash']):,} cells to {nasbench101.cache_file()} in "
          f"{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
