"""The host's worker threads: one reused pool for the kernel calls of the batch driver and
for the array copies that build a Batch (numpy and XLA release the GIL while they work).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

MAX_WORKERS = 8  # threads at most (each may hold one chunk in memory)
_POOL: ThreadPoolExecutor | None = None  # created on first use, its threads reused
_BACKGROUND: ThreadPoolExecutor | None = None  # one thread for work beside the pool's
_POOL_LOCK = threading.Lock()
_THREAD_PREFIX = "rfsearch-chunk"


def cores() -> int:
    """CPU cores this process may run on (at most MAX_WORKERS)."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(count or 1, MAX_WORKERS))


def _forget_pool() -> None:
    """In a forked child the pools' threads are gone: start new pools there."""
    global _POOL, _BACKGROUND
    _POOL = _BACKGROUND = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _pool(count: int) -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers != count:
            _POOL = ThreadPoolExecutor(count, thread_name_prefix=_THREAD_PREFIX)
        return _POOL


def concurrently(fn: Callable, items: Iterable, count: int | None = None) -> Iterator:
    """``map(fn, items)`` in order, with ``count`` calls (None: :func:`cores`) in flight.

    The threads live in one reused pool (JAX's dispatch caches are per thread, so fresh
    threads would pay for them on every call); from a pool thread it runs serially."""
    items = list(items)
    count = cores() if count is None else count
    if count <= 1 or len(items) <= 1 or threading.current_thread().name.startswith(
            _THREAD_PREFIX):
        return map(fn, items)
    return _pool(count).map(fn, items)


def in_background(fn: Callable, *args) -> Future:
    """``fn(*args)`` on a thread of its own, beside the pool's calls (for work that
    releases the GIL, such as Arrow's compute kernels): its Future."""
    global _BACKGROUND
    with _POOL_LOCK:
        if _BACKGROUND is None:
            _BACKGROUND = ThreadPoolExecutor(1, thread_name_prefix="rfsearch-background")
        return _BACKGROUND.submit(fn, *args)
