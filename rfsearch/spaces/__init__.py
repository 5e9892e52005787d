"""Search spaces: design grids and built-in NAS spaces, tabulated for the device search."""

from .grid import grid_space, load_grid
from .registry import BUILTIN, builtin, resolve_space
from .space import Plan, Slot, Space, Variable, plan

__all__ = ["BUILTIN", "Plan", "Slot", "Space", "Variable", "builtin", "grid_space",
           "load_grid", "plan", "resolve_space"]
