"""Where rfsearch keeps files it can rebuild (compiled kernels, generated NAS-Bench-101
cells): ``$RFSEARCH_CACHE``, else ``rfsearch`` in the user's cache directory
(``$XDG_CACHE_HOME`` or ``~/.cache``). Nothing is ever written into the installed package."""

from __future__ import annotations

import os
from pathlib import Path

ENV_CACHE = "RFSEARCH_CACHE"


def cache_dir() -> Path:
    """The cache directory (read from the environment at each call; not created here)."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rfsearch"
