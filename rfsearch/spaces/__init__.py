"""Search spaces: design grids and built-in NAS spaces, tabulated for the device search."""

from .grid import grid_space, load_grid
from .registry import BUILTIN, builtin, candidates, resolve_space
from .space import Slot, Space, Variable

__all__ = ["BUILTIN", "Slot", "Space", "Variable", "builtin", "candidates", "grid_space",
           "load_grid", "resolve_space"]
