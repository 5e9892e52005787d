"""Built-in search spaces by name, and :func:`resolve_space` for what users pass."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

from ..errors import SpecError
from .grid import grid_space, load_grid
from .space import Space


@dataclass(frozen=True)
class Builtin:
    """A built-in space: its module, the factory building it, the function counting its
    candidates without building it, and a one-line description."""

    module: str
    factory: str
    size: str
    description: str


# name -> entry; modules are imported when a space is asked for
BUILTIN: dict[str, Builtin] = {
    "nasbench201": Builtin("nas", "nasbench201", "nasbench201_size", "NAS-Bench-201: 15,625 "
                           "cells in the 5-cell x 3-stage skeleton, input 32"),
    "nasbench101": Builtin("nasbench101", "nasbench101", "nasbench101_size", "NAS-Bench-101: "
                           "all 423,624 unique cells (module_hash) in the 3-stack skeleton, "
                           "input 32"),
    "natsbench-sss": Builtin("nas", "natsbench_sss", "natsbench_sss_size", "NATS-Bench size "
                             "space: 32,768 channel configurations (one geometry), input 32"),
    "ofa-mbv3": Builtin("families", "ofa_mbv3", "ofa_mbv3_size", "Once-for-All MobileNetV3: "
                        "per-stage depth {2,3,4} x per-block kernel {3,5,7}, 117^5 "
                        "candidates, input 224"),
    "anynet": Builtin("families", "anynet_space", "anynet_size", "AnyNetX: stage depths "
                      "1..16 for 4 stages, input 224"),
    "regnet": Builtin("families", "regnet_space", "regnet_size", "RegNetX generator grid (w0, "
                      "wa, wm, depth), input 224"),
    "darts": Builtin("darts", "darts", "darts_size", "DARTS genotypes (normal + reduction "
                     "cell, 7 ops) in the 20-cell CIFAR network: 1.08e18, sampling only, "
                     "input 32"),
    "efficientnet": Builtin("families", "efficientnet_space", "efficientnet_size",
                            "EfficientNet compound scaling: depth coefficient grid around "
                            "B0-B7, input 224"),
}


def _entry(name: str) -> Builtin:
    if name not in BUILTIN:
        close = difflib.get_close_matches(name, BUILTIN, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else " (see 'rfsearch spaces')"
        raise SpecError(f"unknown space {name!r}{hint}")
    return BUILTIN[name]


def _function(entry: Builtin, attr: str) -> Callable:
    return getattr(import_module(f"{__package__}.{entry.module}"), attr)


def builtin(name: str) -> Space:
    """A built-in space by name."""
    entry = _entry(name)
    return _function(entry, entry.factory)()


def candidates(name: str) -> int:
    """The candidate count of a built-in space, without building it."""
    entry = _entry(name)
    return _function(entry, entry.size)()


def resolve_space(space) -> tuple[Space, str | None]:
    """(Space, default where) from a Space, a grid dict, a grid file or a built-in name."""
    if isinstance(space, Space):
        return space, None
    if isinstance(space, Mapping):
        return grid_space(dict(space))
    if isinstance(space, str | Path):
        text = str(space)
        if text in BUILTIN:
            return builtin(text), None
        if Path(text).suffix.lower() in (".yaml", ".yml", ".json") or Path(text).exists():
            return load_grid(text)
        return builtin(text), None
    raise SpecError(f"a space is a built-in name, a grid file or a grid dict, got "
                    f"{type(space).__name__}")
