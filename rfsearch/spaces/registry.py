"""Built-in search spaces by name, and :func:`resolve_space` for what users pass."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from pathlib import Path

from ..errors import SpecError
from .grid import grid_space, load_grid
from .space import Space

# name -> (builder, one-line description); builders are imported lazily
BUILTIN: dict[str, tuple[str, str, str]] = {
    "nasbench201": ("nas", "nasbench201", "NAS-Bench-201: 15,625 cells in the 5-cell x 3-stage "
                    "skeleton, input 32"),
    "nasbench101": ("nasbench101", "nasbench101", "NAS-Bench-101: all 423,624 unique cells "
                    "(module_hash) in the 3-stack skeleton, input 32"),
    "natsbench-sss": ("nas", "natsbench_sss", "NATS-Bench size space: 32,768 channel "
                      "configurations (one geometry), input 32"),
    "ofa-mbv3": ("families", "ofa_mbv3", "Once-for-All MobileNetV3: per-stage depth {2,3,4} x "
                 "per-block kernel {3,5,7}, 117^5 candidates, input 224"),
    "anynet": ("families", "anynet_space", "AnyNetX: stage depths 1..16 for 4 stages, input 224"),
    "regnet": ("families", "regnet_space", "RegNetX generator grid (w0, wa, wm, depth), "
               "input 224"),
    "darts": ("darts", "darts", "DARTS genotypes (normal + reduction cell, 7 ops) in the "
              "20-cell CIFAR network: 1.08e18, sampling only, input 32"),
    "efficientnet": ("families", "efficientnet_space", "EfficientNet compound scaling: depth "
                     "coefficient grid around B0-B7, input 224"),
}


def builtin(name: str) -> Space:
    """A built-in space by name."""
    if name not in BUILTIN:
        close = difflib.get_close_matches(name, BUILTIN, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else " (see 'rfsearch spaces')"
        raise SpecError(f"unknown space {name!r}{hint}")
    module, attr, _ = BUILTIN[name]
    from importlib import import_module

    factory: Callable[[], Space] = getattr(import_module(f"{__package__}.{module}"), attr)
    return factory()


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
