"""Evaluating the next chunk while the caller filters and writes this one.

Search runs ask for chunks in order (:func:`rfsearch.search.runner.chunk_loop`); a run
whose chunks are computed on the host hands :class:`Ahead` its per-chunk function, and
each request then also starts the following chunk on a background thread, so the
kernel's calls overlap the filtering and Parquet writing of the chunk before. At most
one chunk is computed ahead (memory: two chunks).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor


class Ahead:
    """``get(c)``: ``compute(c)``, started ahead when c is the chunk expected next;
    ``order``: the chunks that will be asked for, in order (default: all ``chunks``)."""

    def __init__(self, compute: Callable[[int], object], chunks: int):
        self.compute = compute
        self.pending: tuple[int, Future] | None = None
        self.pool: ThreadPoolExecutor | None = None
        self.expect(range(chunks))

    def expect(self, order) -> None:
        """The chunks that will be asked for from now on, in order (finished chunks of a
        resumed run, and other processes' shares, are never computed ahead)."""
        self.following = dict(itertools.pairwise(order))

    def get(self, c: int):
        started, self.pending = self.pending, None
        if started is not None and started[0] != c:  # another chunk was asked for
            started[1].cancel()
            started = None
        try:
            result = self.compute(c) if started is None else started[1].result()
        except BaseException:
            self.close()
            raise
        if c in self.following:
            self.pool = self.pool or ThreadPoolExecutor(1, thread_name_prefix="rfsearch-ahead")
            following = self.following[c]
            self.pending = (following, self.pool.submit(self.compute, following))
        else:
            self.close()
        return result

    def close(self) -> None:
        """Drop a chunk started ahead and stop the thread."""
        if self.pending is not None:
            self.pending[1].cancel()
            self.pending = None
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None
