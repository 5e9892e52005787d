"""Where rfsearch keeps files it can rebuild (compiled kernels, generated NAS-Bench-101
cells): ``$RFSEARCH_CACHE``, else ``rfsearch`` in the user's cache directory
(``$XDG_CACHE_HOME`` or ``~/.cache``). Nothing is ever written into the installed package.
Files that other processes may read while they are written (these caches, a search's
manifest and parts) are written whole or not at all (:func:`write_atomic`)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

ENV_CACHE = "RFSEARCH_CACHE"


def cache_dir() -> Path:
    """The cache directory (read from the environment at each call; not created here)."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rfsearch"


def write_atomic(path: Path, write) -> None:
    """``write(tmp)`` then rename onto ``path``; the temporary name is hidden (readers skip
    it) and unique, so processes writing the same file never share one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
