"""Design grids: a template of layers whose fields may be lists of choices.

A grid (YAML or JSON) is a chain of entries; each entry is a slot of the space:

* a layer, as in a spec, where any of ``kernel``, ``stride``, ``dilation``, ``padding``
  or ``op`` may be a list of choices (``kernel: [3, 5, 7]``). In a grid a list is always
  a list of choices: write a single non-square value as a one-choice list
  (``kernel: [[3, 1]]``). ``{choices: [...], tie: NAME}`` shares one choice between every
  field tied to NAME (anywhere in the grid; tied fields need equally many choices);
* ``{repeat: [1, 2, 3], layers: [...]}``: the layers repeated a chosen number of times
  (their own choices are made once and shared by the copies);
* ``{branches: [[...], [...]], merge: add | concat}``: a small DAG, each branch a list of
  layers (an empty list is the identity shortcut) from the slot's input to the merge;
* ``{template: NAME}``: the entries of ``templates: {NAME: [...]}`` inlined (fresh
  choices at each use unless tied).

Top-level keys: ``name``, ``description``, ``input_size``, ``layers``, ``templates``,
``where`` (a default filter, see :mod:`rfsearch.filter`). Each choice becomes a column
named ``<slot>.<field>`` (``<slot>.repeat`` for repeats) unless tied (then the tie name).
"""

from __future__ import annotations

import difflib
import itertools
import json
from pathlib import Path

from ..axes import PER_AXIS_FIELDS, arity
from ..errors import SpecError
from ..sources import read_document
from ..spec import GEOMETRIC_KEYS, parse_input_size, parse_network
from .space import Slot, Space, Variable, fitted_size

GRID_KEYS = ("name", "description", "input_size", "layers", "templates", "where")
CHOICE_FIELDS = ("op", "kernel", "stride", "dilation", "padding", "factor", "mode")
LAYER_KEYS = tuple(dict.fromkeys((*CHOICE_FIELDS, *GEOMETRIC_KEYS, "name", "channels",
                                  "groups", "comment")))


class _Builder:
    """Collects variables in order of first use; ties map to one variable."""

    def __init__(self, grid_name: str):
        self.grid = grid_name
        self.variables: list[Variable] = []
        self.ties: dict[str, int] = {}

    def fail(self, where: str, message: str):
        raise SpecError(f"grid {self.grid!r}, {where}: {message}")

    def choice(self, where: str, column: str, raw) -> tuple[int | None, list]:
        """(variable index or None, the options) for one field value."""
        tie = None
        if isinstance(raw, dict):
            unknown = set(raw) - {"choices", "tie"}
            if unknown or "choices" not in raw:
                self.fail(where, "a choice is {choices: [...], tie: NAME}"
                          + (f"; unknown key {sorted(unknown)[0]!r}" if unknown else ""))
            tie, raw = raw.get("tie"), raw["choices"]
            if tie is not None and not isinstance(tie, str):
                self.fail(where, f"tie must be a name, got {tie!r}")
        if not isinstance(raw, list):
            return None, [raw]
        if not raw:
            self.fail(where, "an empty list of choices")
        if len(raw) == 1 and tie is None:
            return None, raw
        labels = tuple(json.dumps(x) if isinstance(x, list | dict) else x for x in raw)
        if tie is not None and tie in self.ties:
            index = self.ties[tie]
            if self.variables[index].size != len(raw):
                self.fail(where, f"tie {tie!r} has {self.variables[index].size} choices here "
                                 f"{len(raw)}")
            return index, raw
        self.variables.append(Variable(tie or column, labels))
        if tie is not None:
            self.ties[tie] = len(self.variables) - 1
        return len(self.variables) - 1, raw


class _Template:
    """A layer entry with its choice fields resolved to (variable, options)."""

    def __init__(self, fixed: dict, fields: dict):
        self.fixed, self.fields = fixed, fields  # fields: key -> (variable | None, options)

    def variables(self) -> list[int]:
        return [v for v, _ in self.fields.values() if v is not None]

    def layer(self, digit: dict[int, int], name: str) -> dict:
        layer = dict(self.fixed, name=name)
        for key, (var, options) in self.fields.items():
            layer[key] = options[digit[var]] if var is not None else options[0]
        return layer


def _layer(b: _Builder, raw, slot: str, where: str) -> _Template:
    if not isinstance(raw, dict):
        b.fail(where, f"a layer must be a mapping, got {raw!r}")
    for key in raw:
        if key not in LAYER_KEYS:
            close = difflib.get_close_matches(str(key), LAYER_KEYS, n=1)
            b.fail(where, f"unknown field {key!r}" + (f" (did you mean {close[0]!r}?)"
                                                       if close else ""))
    if "op" not in raw:
        b.fail(where, "missing field 'op'")
    fields = {}
    for key in CHOICE_FIELDS:
        if key in raw:
            fields[key] = b.choice(f"{where}, field {key!r}", f"{slot}.{key}", raw[key])
    fixed = {k: v for k, v in raw.items() if k not in CHOICE_FIELDS and k != "name"}
    return _Template(fixed, fields)


def _slot(b: _Builder, raw, name: str, where: str) -> Slot:
    """One grid entry -> one slot (all joint options enumerated as block specs)."""
    if isinstance(raw, dict) and "repeat" in raw:
        unknown = set(raw) - {"repeat", "layers", "name"}
        if unknown or not isinstance(raw.get("layers"), list) or not raw["layers"]:
            b.fail(where, "a repeat is {repeat: [counts], layers: [...]}")
        depth_var, counts = b.choice(f"{where}, field 'repeat'", f"{name}.repeat", raw["repeat"])
        if any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in counts):
            b.fail(where, f"repeat counts must be integers >= 0, got {counts!r}")
        inner = [_layer(b, layer, f"{name}.{i}", f"{where}, layer #{i}")
                 for i, layer in enumerate(raw["layers"])]
        branches, merge = None, None
    elif isinstance(raw, dict) and "branches" in raw:
        unknown = set(raw) - {"branches", "merge", "name"}
        if unknown or not isinstance(raw["branches"], list) or len(raw["branches"]) < 2:
            b.fail(where, "branches is {branches: [[...], [...]], merge: add | concat}")
        merge = raw.get("merge", "add")
        if merge not in ("add", "concat"):
            b.fail(where, f"merge must be 'add' or 'concat', got {merge!r}")
        branches = [[_layer(b, layer, f"{name}.b{j}.{i}", f"{where}, branch #{j} layer #{i}")
                     for i, layer in enumerate(branch)] for j, branch in enumerate(raw["branches"])]
        inner, depth_var, counts = [t for br in branches for t in br], None, [1]
    else:
        inner, depth_var, counts, branches, merge = [_layer(b, raw, name, where)], None, [1], \
            None, None
    used = sorted({v for t in inner for v in t.variables()} | (
        {depth_var} if depth_var is not None else set()))
    blocks = []
    for combo in itertools.product(*(range(b.variables[v].size) for v in used)):
        digit = dict(zip(used, combo, strict=True))
        count = counts[digit[depth_var]] if depth_var is not None else counts[0]
        blocks.append(_block(inner, branches, merge, count, digit))
    return Slot(name, tuple(used), tuple(blocks))


def _block(inner, branches, merge, count, digit) -> dict:
    if branches is None:
        layers = [t.layer(digit, f"l{r}.{i}") for r in range(count) for i, t in enumerate(inner)]
        return {"name": "block", "layers": layers or [{"name": "id", "op": "identity"}]}
    layers, ends = [], []
    for j, branch in enumerate(branches):
        prev = "input"
        for i, t in enumerate(branch):
            layer = t.layer(digit, f"b{j}.{i}")
            layers.append(layer | {"inputs": [prev]})
            prev = layer["name"]
        ends.append(prev)
    layers.append({"name": "merge", "op": merge, "inputs": ends})
    return {"name": "block", "layers": layers}


def _entries(b: _Builder, raw_list, templates: dict, prefix: str, where: str, depth=0):
    if not isinstance(raw_list, list):
        b.fail(where, "layers must be a list")
    for i, raw in enumerate(raw_list):
        name = f"{prefix}{raw.get('name', f'layer{i}') if isinstance(raw, dict) else i}"
        if isinstance(raw, dict) and "template" in raw:
            key = raw["template"]
            if key not in templates:
                b.fail(f"{where} #{i}", f"unknown template {key!r}")
            if depth > 8:
                b.fail(f"{where} #{i}", f"templates nested more than 8 deep (does {key!r} "
                                        "use itself?)")
            yield from _entries(b, templates[key], templates, f"{name}.", f"template {key!r}",
                                depth + 1)
        else:
            yield name, raw, f"{where} #{i} {name!r}"


def _kind(block: dict | None) -> tuple[bool, int | None, str | None]:
    """(whether a block needs the periodic program, so that the grid is searched candidate
    by candidate through evaluate(); its axes, None when it fits any (scalar fields only:
    a candidate takes the axes its other blocks state); why it is invalid, or None)."""
    if block is None:
        return False, None, None
    try:
        net = parse_network({"name": "block", **block})
    except SpecError as err:  # a tabulated grid refuses it with its slot's name
        return False, None, str(err)
    states = block.get("dims") is not None or any(
        arity(layer.get(key)) is not None for layer in block.get("layers", ())
        if isinstance(layer, dict) for key in PER_AXIS_FIELDS)
    return net.periodic, net.dims if states else None, None


def grid_space(grid: dict, label: str | None = None) -> tuple[Space, str | None]:
    """(the Space of a grid dict, its default ``where`` filter or None)."""
    if not isinstance(grid, dict):
        raise SpecError(f"{label or 'grid'}: a grid must be a mapping, got {type(grid).__name__}")
    name = grid.get("name", label or "grid")
    b = _Builder(str(name))
    for key in grid:
        if key not in GRID_KEYS:
            close = difflib.get_close_matches(str(key), GRID_KEYS, n=1)
            b.fail("top level", f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)"
                                                          if close else ""))
    if "layers" not in grid:
        b.fail("top level", "missing key 'layers'")
    templates = grid.get("templates", {})
    slots, names = [], set()
    for slot_name, raw, where in _entries(b, grid["layers"], templates, "", "layer"):
        if slot_name in names:
            b.fail(where, f"duplicate name {slot_name!r}")
        names.add(slot_name)
        slots.append(_slot(b, raw, slot_name, where))
    if not slots:
        b.fail("top level", "layers is empty: a grid needs at least one layer")
    kinds = [(slot, *_kind(block)) for slot in slots for block in slot.blocks]
    host = any(k[1] for k in kinds)
    dims = max((k[2] for k in kinds if k[2] is not None), default=2)
    bad = next((k for k in kinds if k[3] is not None), None)
    if host and bad is not None:  # as a tabulated grid's slots are: before any candidate
        raise SpecError(f"space {str(name)!r}, slot {bad[0].name!r}: {bad[3]}")
    size = grid.get("input_size")
    if size is not None:  # per candidate: N, HxW or DxHxW; tabulated: N or HxW
        size = fitted_size(str(name), dims, size) if host else parse_input_size(size)
    space = Space(str(name), b.variables, slots, size, definition=grid,
                  description=str(grid.get("description", "")), host=host, dims=dims)
    where_text = grid.get("where")
    return space, where_text


def load_grid(path: str | Path) -> tuple[Space, str | None]:
    """Read a grid file (YAML or JSON; one grid per file)."""
    return grid_space(read_document(path), Path(path).stem)
