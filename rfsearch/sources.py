"""Where specs come from: dicts, files (JSON, JSON Lines, YAML via safe_load, Parquet
chain tables), ``zoo:NAME`` networks, a Batch or an Arrow/pandas table of chains;
:func:`resolve` turns whatever a user passes into :class:`Source` objects.

Spec files are data only: nothing is evaluated, unpickled or imported. Each spec
is validated on its own, so one bad spec costs one row, never the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import zoo
from .axes import parse_input_sizes
from .chain_table import chain_rows, frame_table
from .encode import Batch
from .errors import Location, SpecError
from .importers.files import MODEL_SUFFIXES, import_file, is_model_file
from .plain import split_plain
from .spec import Network, parse_network

DOC_START = re.compile(r"---(\s|$)")  # a line that starts a YAML document
SPEC_SUFFIXES = (".json", ".jsonl", ".ndjson", ".yaml", ".yml", ".parquet")


@dataclass
class Source:
    """Specs from one place: validated networks and the specs that failed.

    ``networks[i]`` is spec ``index[i]`` of the source; ``plain`` holds the plain chain
    specs read column-wise (:mod:`rfsearch.plain`), row ``j`` spec ``plain_index[j]``;
    ``errors`` holds (spec index, spec name or None, one-line message) for the rest.
    """

    label: str | None
    networks: list[Network]
    index: list[int] | np.ndarray  # [len(networks)] or [len(batch)] ints
    errors: list[tuple[int, str | None, str]]
    total: int
    batch: Batch | None = None  # set instead of networks for columnar sources
    plain: Batch | None = None
    plain_index: list[int] = field(default_factory=list)
    size: tuple[int, ...] | None = None  # a model file's own input size: used when none given

    def parsed(self) -> list[tuple[int, str]]:
        """(spec index, name) of every spec that parsed, in the source's order."""
        if self.batch is not None:
            return list(zip(np.asarray(self.index).tolist(),
                            np.asarray(self.batch.names).tolist(), strict=True))
        found = [(i, net.name) for i, net in zip(self.index, self.networks, strict=True)]
        if self.plain is not None:
            found += zip(self.plain_index, self.plain.names.tolist(), strict=True)
        return sorted(found)


def from_objects(objects: list, label: str | None = None,
                 positions: list[int] | None = None, repeats: bool = False) -> Source:
    """Validate spec dicts one by one; bad ones become error entries. ``repeats``: the
    objects were read from a text in which some object gave a key twice. Plain chain
    specs are read column-wise when there are several (a single spec is always a
    Network: ``show``, ``coords`` and ``plot`` read one)."""
    where = positions if positions is not None else range(len(objects))
    plain, plain_rows, rest = (split_plain(objects, where) if len(objects) > 1 and not repeats
                               else (None, [], range(len(objects))))
    src = Source(label, [], [], [], len(objects), plain=plain, plain_index=plain_rows)
    for i in rest:
        raw = objects[i]
        try:
            problem = repeated_key(raw) if repeats else None
            if problem:
                raise SpecError(problem, _repeat_location(raw, label, where[i]))
            src.networks.append(parse_network(raw, where[i], label))
            src.index.append(i)
        except SpecError as err:  # the name its message gives (a default one too)
            name = raw.get("name", f"net{where[i]}") if isinstance(raw, dict) else None
            src.errors.append((i, name if isinstance(name, str) else None, str(err)))
    return src


# A JSON or YAML object that gives a key twice (json and PyYAML keep the last value
# silently) holds this key, its value the message; a spec holding one is refused.
REPEATED = object()


class Marks:
    """How many objects read so far gave a key twice: a text during whose reading none
    was made needs no search for them."""

    made = 0


def _json_object(pairs: list) -> dict:
    """json's ``object_pairs_hook``: the object, marked if a key is given twice."""
    data = dict(pairs)
    if len(data) < len(pairs):
        data[REPEATED] = f"key {_first_repeat(k for k, _ in pairs)!r} is given twice in " \
            "one object"
        Marks.made += 1
    return data


def _repeat_location(raw, label, index: int) -> Location:
    """Where the first object that gives a key twice sits: its spec, and its layer when
    one of the spec's layers holds it."""
    spec = raw if isinstance(raw, dict) else {}
    layers = spec.get("layers") if isinstance(spec.get("layers"), list) else []
    at = next((k for k, layer in enumerate(layers) if repeated_key(layer)), None)
    name = layers[at].get("name") if at is not None and isinstance(layers[at], dict) else None
    own = spec.get("name")
    return Location(label, index, own if isinstance(own, str) else None, at,
                    name if isinstance(name, str) else None)


def _first_repeat(keys):
    """The first key that an earlier one equals (None if none does)."""
    seen: set = set()
    return next((k for k in keys if k in seen or seen.add(k)), None)


def repeated_key(data) -> str | None:
    """The message of the first object inside ``data`` that gives a key twice."""
    todo = [data]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            if REPEATED in item:
                return item[REPEATED]
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return None


def _json_error(label: str, err: json.JSONDecodeError, line: int | None = None) -> str:
    lineno = err.lineno if line is None else line
    return f"{label}: invalid JSON at line {lineno}, column {err.colno}: {err.msg}"


def _as_list(data) -> list:
    return data if isinstance(data, list) else [data]


def _read_text(path: Path, label: str) -> str:
    """The file's text (UTF-8, a byte-order mark allowed), or a one-line SpecError."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise SpecError(f"{label}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at "
                        f"offset {err.start})") from None
    except OSError as err:
        raise SpecError(f"{label}: cannot read the file ({err.strerror or err})") from None


def _parse_json(text: str, label: str, line: int | None = None):
    try:
        return json.loads(text, object_pairs_hook=_json_object)
    except json.JSONDecodeError as err:
        raise SpecError(_json_error(label, err, line)) from None
    except RecursionError:
        where = "" if line is None else f" at line {line}"
        raise SpecError(f"{label}: invalid JSON{where}: nested too deeply") from None


def read_source(path: str | Path) -> Source:
    """Read one spec file; a file-level problem raises SpecError naming the file."""
    path = Path(path)
    label = str(path)
    suffix = path.suffix.lower()
    if suffix not in SPEC_SUFFIXES:
        raise SpecError(f"{label}: unsupported file type {suffix or '(none)'!r}; "
                        f"use one of {', '.join(SPEC_SUFFIXES)} (or a model file: "
                        f"{', '.join(MODEL_SUFFIXES)})")
    if path.is_dir():
        raise SpecError(f"{label}: is a directory, not a spec file")
    if not path.exists():
        raise SpecError(f"{label}: no such file")
    if suffix == ".parquet":
        return read_chain_source(path)
    text = _read_text(path, label)
    if not text.strip():
        raise SpecError(f"{label}: file is empty")
    if suffix in (".jsonl", ".ndjson"):
        return _read_json_lines(text, label)
    if suffix in (".yaml", ".yml"):
        return _read_yaml(text, label)
    before = Marks.made
    try:
        data = _parse_json(text, label)
    except SpecError:
        if _is_json_lines(text):  # a .json file may hold JSON Lines too
            return _read_json_lines(text, label)
        raise
    return from_objects(_as_list(data), label, repeats=Marks.made != before)


def _yaml_documents(text: str, label: str) -> list:
    """Every document of a YAML text (``safe_load_all``: data only, nothing evaluated)."""
    import yaml

    try:
        return list(yaml.load_all(text, Loader=_yaml_loader()))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(f"{label}: invalid YAML{at}: {getattr(err, 'problem', err)}") from None
    except RecursionError:
        raise SpecError(f"{label}: invalid YAML: nested too deeply") from None


def _yaml_loader():
    """PyYAML's safe loader (data only), marking a mapping that gives a key twice; keys
    merged in with ``<<`` may be overridden, as YAML intends."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            own = [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)
                   and k.tag != "tag:yaml.org,2002:merge"]
            mapping = super().construct_mapping(node, deep)
            key = _first_repeat(own)
            if key is not None:
                mapping[REPEATED] = (f"key {key!r} is given twice in one mapping (line "
                                     f"{node.start_mark.line + 1})")
                Marks.made += 1
            return mapping

    return Loader


def read_document(path: str | Path) -> object:
    """One JSON or YAML document (a grid, say), read as data; errors name the file."""
    path = Path(path)
    label = str(path)
    if path.suffix.lower() not in (".json", ".yaml", ".yml"):
        raise SpecError(f"{label}: unsupported file type {path.suffix or '(none)'!r}; "
                        "use .yaml, .yml or .json")
    if not path.is_file():
        raise SpecError(f"{label}: no such file")
    text = _read_text(path, label)
    if not text.strip():
        raise SpecError(f"{label}: file is empty")
    if path.suffix.lower() == ".json":
        data = _parse_json(text, label)
    else:
        docs = [d for d in _yaml_documents(text, label) if d is not None]
        if len(docs) != 1:
            raise SpecError(f"{label}: expected one YAML document, found {len(docs)}")
        data = docs[0]
    problem = repeated_key(data)
    if problem:
        raise SpecError(f"{label}: {problem}")
    return data


def _is_json_lines(text: str) -> bool:
    """Whether the first non-blank line is a JSON value of its own (and more follow)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return False
    try:
        json.loads(lines[0])
    except (json.JSONDecodeError, RecursionError):
        return False
    return True


def _read_json_lines(text: str, label: str) -> Source:
    before, entries = Marks.made, []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                entries.append(_parse_json(line, label, lineno))
            except SpecError as err:
                entries.append(err)
    return _from_entries(entries, label, Marks.made != before)


def _read_yaml(text: str, label: str) -> Source:
    """Every document of a YAML file, each a spec or a list of specs. A document that is
    not YAML costs its own row only: the file is read again document by document (split
    at the ``---`` lines that start them), its messages naming lines of the file."""
    before = Marks.made
    try:
        docs = _yaml_documents(text, label)
    except SpecError:
        starts = [0] + [i for i, line in enumerate(text.splitlines()) if DOC_START.match(line)]
        if len(starts) == 1:
            raise
        lines = text.splitlines(keepends=True)
        docs = []
        for lo, hi in zip(starts, [*starts[1:], len(lines)], strict=False):
            try:
                docs += _yaml_documents("\n" * lo + "".join(lines[lo:hi]), label)
            except SpecError as err:
                docs.append(err)
    return _from_entries([s for d in docs if d is not None  # an empty document: nothing
                          for s in ([d] if isinstance(d, SpecError) else _as_list(d))], label,
                         Marks.made != before)


def _from_entries(entries: list, label: str, repeats: bool) -> Source:
    """The Source of a file's entries in order: spec objects, or the SpecError of an entry
    that could not be read (its row keeps its position)."""
    objects = [e for e in entries if not isinstance(e, SpecError)]
    positions = [i for i, e in enumerate(entries) if not isinstance(e, SpecError)]
    src = from_objects(objects, label, positions, repeats)
    src.index = [positions[i] for i in src.index]  # positions in the file, bad entries too
    src.plain_index = [positions[i] for i in src.plain_index]
    src.errors = [(positions[i], n, m) for i, n, m in src.errors] + [
        (i, None, str(e)) for i, e in enumerate(entries) if isinstance(e, SpecError)]
    src.total = len(entries)
    return src


def read_chain_source(path: str | Path | pa.Table, *, label: str | None = None,
                      offset: int = 0, bad: dict | None = None) -> Source:
    """A Parquet file (or Arrow table) of chains -> Source: a Batch of the valid rows and
    one located error per invalid row, validated without a Python loop over good rows.
    ``offset``: the table's first row in a larger file (a streamed record batch), for
    default names and error locations. The columns: :mod:`rfsearch.chain_table`.
    """
    label = label or ("<table>" if isinstance(path, pa.Table) else str(path))
    try:
        table = path if isinstance(path, pa.Table) else pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise SpecError(f"{label}: not a readable Parquet file ({err})") from None
    batch, good, errors = chain_rows(table, label, offset, bad)
    return Source(label, [], good + offset, errors, table.num_rows, batch)


def read_chains(path: str | Path | pa.Table) -> Batch:
    """A Parquet file or Arrow table of chains -> Batch (see :func:`read_chain_source`);
    raises SpecError naming the first invalid row."""
    src = read_chain_source(path)
    if src.errors:
        raise SpecError(src.errors[0][2])
    return src.batch


def resolve(specs, input_size=None) -> list[Source]:
    """Normalise what users pass: a dict, a list of dicts, path(s) (spec files, or model
    files imported at ``input_size``: .onnx, .keras, .h5, .pt2), a Batch, or a table of
    chains (Arrow or pandas)."""
    if isinstance(specs, Batch):
        return [Source(None, [], np.arange(len(specs)), [], len(specs), specs)]
    if isinstance(specs, pd.DataFrame):
        table, bad = frame_table(specs)
        return [read_chain_source(table, bad=bad)]
    if isinstance(specs, pa.Table):
        return [read_chain_source(specs)]
    if isinstance(specs, Mapping):
        return [from_objects([specs])]
    if isinstance(specs, str | Path):
        return [_read_or_error(specs, input_size)]
    if not isinstance(specs, Iterable):
        raise SpecError(f"specs must be a spec, a path, a table or a list of them, got "
                        f"{type(specs).__name__}")
    specs = list(specs)
    if specs and all(isinstance(s, str | Path) for s in specs):
        return [_read_or_error(s, input_size) for s in specs]
    return [from_objects(specs)]


def _model_source(path, input_size) -> Source:
    """An imported model file. One imported without ``input_size`` has a fixed one (an
    importer refuses a dynamic size without it): its rows are computed at that size."""
    spec = import_file(path, input_size=input_size)
    src = from_objects([spec], label=str(path))
    if input_size is None:
        src.size = parse_input_sizes(spec["source"]["input_size"])
    return src


def _read_or_error(path, input_size=None) -> Source:
    """A file's specs (or a ``zoo:NAME`` network, or an imported model file); a file that
    cannot be read at all becomes one error row."""
    try:
        if isinstance(path, str) and path.startswith(zoo.PREFIX):
            return from_objects([zoo.build(path)], label=path)
        if is_model_file(path):
            return _model_source(path, input_size)
        return read_source(path)
    except SpecError as err:  # the row stands for the file: it is named by it
        return Source(str(path), [], [], [(0, str(path), str(err))], 1)
