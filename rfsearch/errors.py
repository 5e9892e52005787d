"""The one exception family of rfsearch.

Every problem with user input is a :class:`SpecError`: a ``ValueError`` whose
message is one line naming where the problem is (file, spec, layer) and what is
wrong with which field, e.g.::

    nets.jsonl: spec #3 'foo', layer #2 'c2': stride must be a positive integer, got 0
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Location:
    """Where in the user's input a problem sits; every part is optional."""

    file: str | None = None
    spec_index: int | None = None
    spec_name: str | None = None
    layer_index: int | None = None
    layer_name: str | None = None

    def __str__(self) -> str:
        return where_text(self.file, self.spec_index, self.spec_name, self.layer_index,
                          self.layer_name)


def where_text(file=None, spec_index=None, spec_name=None, layer_index=None,
               layer_name=None) -> str:
    """A :class:`Location`'s text from its parts (for many rows, without a Location each)."""
    parts = []
    if spec_index is not None or spec_name is not None:
        spec = "spec" if spec_index is None else f"spec #{spec_index}"
        parts.append(spec if spec_name is None else f"{spec} {spec_name!r}")
    if layer_index is not None or layer_name is not None:
        layer = "layer" if layer_index is None else f"layer #{layer_index}"
        parts.append(layer if layer_name is None else f"{layer} {layer_name!r}")
    where = ", ".join(parts)
    if file:
        where = f"{file}: {where}" if where else file
    return where


class SpecError(ValueError):
    """A malformed or invalid architecture spec (or other user input).

    ``problem`` is the bare message; ``location`` says where. ``str(err)`` is the
    one-line message shown to users.
    """

    def __init__(self, problem: str, location: Location | None = None):
        self.problem = problem
        self.location = location or Location()
        where = str(self.location)
        super().__init__(f"{where}: {problem}" if where else problem)

    def at(self, where: Location) -> SpecError:
        """The same problem with more of its location filled in (parts already set win)."""
        known = {k: v for k, v in vars(self.location).items() if v is not None}
        return SpecError(self.problem, replace(where, **known))
