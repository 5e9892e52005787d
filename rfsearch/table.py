"""Tables: the one declared output schema, DataFrame assembly and the Parquet writer."""

from __future__ import annotations

import base64
import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import SpecError

PARQUET = ".parquet"  # the suffix of the tables written
AXIS_NAMES = {"d": "depth", "h": "height", "w": "width"}
# The per-axis geometry, in table order: (key, type, description); one column per axis,
# key_d (3-D networks only), key_h (null for 1-D networks) and key_w.
PER_AXIS = (
    ("rf", pa.int64(), "receptive field size along the {axis}: the largest input box of an "
                       "output unit (union over all paths); null when unbounded (a global "
                       "pool without input size)"),
    ("rf_min", pa.int64(), "smallest input box of an output unit along one input-to-output "
                           "path, {axis}"),
    ("stride", pa.int32(), "effective stride (jump) along the {axis}: input pixels between "
                           "neighbouring outputs, over stride_den"),
    ("stride_den", pa.int32(), "denominator of the effective stride along the {axis}, in "
                               "lowest terms (1 without upsampling)"),
    ("period", pa.int32(), "output units after which the input boxes repeat along the "
                           "{axis}, shifted by period x stride: 1 when every unit y reads "
                           "[y*stride - padding, ... + rf - 1]; more after resampling (a "
                           "stride-2 layer, then nearest x2: stride 1, period 2)"),
    ("padding", pa.int64(), "effective padding P along the {axis}: output unit 0 reads from "
                            "input pixel -P; null when 'same' padding with stride > 1 needs "
                            "an input size"),
    ("aligned", pa.bool_(), "every merge sees inputs with equal stride and equal box centres "
                            "(every output unit); null when the padding is unknown"),
    ("out", pa.int32(), "output feature-map size along the {axis} at the input size; null "
                        "without one"),
)


def _per_axis_columns() -> dict[str, tuple[pa.DataType, str]]:
    columns = {}
    for key, kind, text in PER_AXIS:
        if key == "aligned":
            columns[key] = (kind, text)
            continue
        for axis, name in AXIS_NAMES.items():
            columns[f"{key}_{axis}"] = (kind, text.format(axis=name))
    return columns


COLUMNS: dict[str, tuple[pa.DataType, str]] = {
    "name": (pa.string(), "network name from the spec"),
    "layer": (pa.int32(), "per-layer tables only: layer index in the spec (0-based)"),
    "layer_name": (pa.string(), "per-layer tables only: layer name"),
    "op": (pa.string(), "per-layer tables only: op name from the spec, lower case"),
    **_per_axis_columns(),
    "error": (pa.string(), "null when the row is valid, else a one-line message"),
    # analysis=True only (rfsearch.analysis; the rule variant is in the file metadata)
    "border": (pa.bool_(), "per layer: the first layer whose receptive field exceeds the "
                           "input (rf > input size on both axes)"),
    "unproductive": (pa.bool_(), "per layer: unproductive at this input size (rfa-toolbox "
                                 "is_border rule)"),
    "critical": (pa.bool_(), "per layer: its smallest receptive field exceeds the input"),
    "border_layer": (pa.string(), "name of the border layer; null when none"),
    "n_unproductive": (pa.int32(), "number of unproductive layers at the input size"),
    "n_critical": (pa.int32(), "number of critical layers at the input size"),
    "feasible_min": (pa.int64(), "smallest input size with no unproductive layer (largest "
                                 "rf_min of any layer)"),
    "feasible_max": (pa.int64(), "largest input size some layer still covers (largest rf)"),
    "rf_at_stride_8": (pa.int64(), "receptive field (height) of the last layer with "
                                   "effective stride 8; null when none"),
    "rf_at_stride_16": (pa.int64(), "the same at effective stride 16"),
    "rf_at_stride_32": (pa.int64(), "the same at effective stride 32"),
    "rf_ratio": (pa.float64(), "output receptive field over the input size (the smallest "
                               "ratio over the axes)"),
}
ANALYSIS_LAYER = ["border", "unproductive", "critical"]
RF_AT_STRIDES = (8, 16, 32)  # the rf_at_stride_K columns
ANALYSIS_NETWORK = ["border_layer", "n_unproductive", "n_critical", "feasible_min",
                    "feasible_max", *(f"rf_at_stride_{s}" for s in RF_AT_STRIDES), "rf_ratio"]
# The analysis columns that need every layer's state (rf_ratio needs only the output).
LAYERWISE = tuple(c for c in ANALYSIS_NETWORK if c not in ("border_layer", "rf_ratio"))
# A search's analysis columns: LAYERWISE (which a filter may use) and the border's name.
SEARCH_ANALYSIS = ("border_layer", *LAYERWISE)
# Columns of the depth axis: present only in tables that hold a 3-D network.
DEPTH = tuple(c for c in COLUMNS if c.endswith("_d"))


def geometry(depth: bool = False) -> tuple[str, ...]:
    """The geometry columns of a network's output, in table order (``depth``: with the _d
    columns of 3-D networks)."""
    return tuple(c for c in _per_axis_columns() if depth or c not in DEPTH)


GEOMETRY = geometry()  # of 2-D (and 1-D) networks

# The search output (rfsearch.search): one row per matching candidate, in this order:
# candidate_id, the space's native key columns, one column per choice, GEOMETRY, valid,
# rf_ratio, and the SEARCH_ANALYSIS columns when a filter or ranking used them.
SEARCH_COLUMNS: dict[str, tuple[pa.DataType, str]] = {
    "candidate_id": (pa.int64(), "the candidate's number in its space: the mixed-radix "
                                 "number of its choices, the first choice most significant"),
    "valid": (pa.bool_(), "the candidate is a network: every choice is valid and its "
                          "geometry within the exact range"),
}
KEY_DESCRIPTION = "the candidate's key in the space's own numbering (e.g. its module hash)"
CHOICE_DESCRIPTION = "the option the candidate takes for this choice of the space"
# Declared result columns of a search, in order (the key and choice columns of the space
# come between candidate_id and the geometry).
def search_result(depth: bool = False) -> tuple[str, ...]:
    """Declared result columns of a search, in order (``depth``: of 3-D blocks)."""
    return ("candidate_id", *geometry(depth), "valid", "rf_ratio", *SEARCH_ANALYSIS)

NETWORK_COLUMNS = [c for c in COLUMNS if c not in ("layer", "layer_name", "op",
                                                  *ANALYSIS_LAYER, *ANALYSIS_NETWORK)]
LAYER_COLUMNS = [c for c in COLUMNS if c not in (*ANALYSIS_LAYER, *ANALYSIS_NETWORK)]


def column_names(per_layer: bool, analysis: bool = False, depth: bool = False) -> list[str]:
    """The declared columns of a result table, in order (``depth``: with the _d columns
    of 3-D networks)."""
    names = LAYER_COLUMNS if per_layer else NETWORK_COLUMNS
    if not depth:
        names = [c for c in names if c not in DEPTH]
    if analysis:
        names = [*names[:-1], *(ANALYSIS_LAYER if per_layer else ANALYSIS_NETWORK), names[-1]]
    return names


def schema(per_layer: bool = False, analysis: bool = False, depth: bool = False) -> pa.Schema:
    """The declared Arrow schema of a result table (network or per-layer; ``depth``: with
    the _d columns of 3-D networks)."""
    names = column_names(per_layer, analysis, depth)
    return pa.schema(
        [pa.field(c, COLUMNS[c][0], metadata={"description": COLUMNS[c][1]}) for c in names]
    )


def search_schema(keys: dict[str, pa.DataType], choices: dict[str, pa.DataType],
                  analysis: bool = False, depth: bool = False) -> pa.Schema:
    """The declared Arrow schema of a search output with these native key and choice
    columns (``analysis``: with the SEARCH_ANALYSIS columns; ``depth``: 3-D blocks)."""
    def field(name):
        own = SEARCH_COLUMNS.get(name) or COLUMNS[name]
        return pa.field(name, own[0], metadata={"description": own[1]})
    def described(columns, text):
        return [pa.field(k, t, metadata={"description": text}) for k, t in columns.items()]
    result = search_result(depth)
    first, *tail = result[:len(result) - (0 if analysis else len(SEARCH_ANALYSIS))]
    return pa.schema([field(first), *described(keys, KEY_DESCRIPTION),
                      *described(choices, CHOICE_DESCRIPTION), *map(field, tail)])


def pandas_dtype(name: str) -> str:
    """The pandas dtype of a declared column (nullable: Int64, Int32, boolean, Float64,
    string)."""
    arrow_type = (SEARCH_COLUMNS.get(name) or COLUMNS[name])[0]
    return _pandas_dtype(arrow_type)


def _pandas_dtype(arrow_type: pa.DataType) -> str:
    return {pa.int64(): "Int64", pa.int32(): "Int32", pa.bool_(): "boolean",
            pa.float64(): "Float64"}.get(arrow_type, "string")


def frame(columns: dict[str, tuple[np.ndarray, np.ndarray | None]], per_layer: bool,
          input_size) -> pd.DataFrame:
    """A DataFrame with the declared columns from (values, null-mask) pairs."""
    data = {}
    analysis = "feasible_max" in columns or "border" in columns
    for name in column_names(per_layer, analysis, "rf_d" in columns):
        data[name] = typed_array(name, *columns[name])
    df = pd.DataFrame(data, copy=False)
    df.attrs["input_size"] = None if input_size is None else list(input_size)
    df.attrs["per_layer"] = per_layer
    return df


def typed_array(name: str, values, mask=None) -> pd.api.extensions.ExtensionArray:
    """The declared column ``name`` as a pandas array from values and a null mask
    (None: no nulls). Fresh arrays of the column's type become the column's memory;
    views and other types are copied."""
    dtype = pandas_dtype(name)
    if dtype == "string":
        return _strings(values)
    numpy = {"Int64": np.int64, "Int32": np.int32, "boolean": np.bool_,
             "Float64": np.float64}[dtype]
    arr = _owned(values, numpy)
    m = np.zeros(arr.shape, bool) if mask is None else _owned(mask, np.bool_)
    return _masked(arr, m, dtype)


def _owned(values, dtype) -> np.ndarray:
    """``values`` as an array of ``dtype`` with memory of its own: a fresh array of that
    type is taken as it is (the column keeps it), anything else (a view, another type)
    is copied once."""
    arr = np.asarray(values)
    if arr.dtype == dtype and arr.base is None and arr.flags.writeable and arr.ndim == 1:
        return arr
    return np.array(arr, dtype=dtype)


def _strings(values) -> pd.api.extensions.ExtensionArray:
    """pandas' "string" array of ``values``: an Arrow string array, or objects (None =
    missing). Arrow converts an object array 2x to 6x faster than ``pd.array(values,
    dtype="string")``; a column without a value is Arrow's null array, never objects."""
    if pd.StringDtype().storage == "pyarrow":
        if not isinstance(values, pa.Array):
            values = np.asarray(values, dtype=object)
            if not values.size or (values == None).all():  # noqa: E711
                values = pa.nulls(len(values), pa.large_string())
        try:
            return pd.arrays.ArrowStringArray(values if isinstance(values, pa.Array) else
                                              pa.array(values, type=pa.large_string(),
                                                       from_pandas=True))
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all str: pandas converts them
            pass
    if isinstance(values, pa.Array):
        values = values.to_pandas().to_numpy(dtype=object)
    return pd.array(values, dtype="string")


def _masked(values: np.ndarray, mask: np.ndarray, dtype: str):
    if dtype == "boolean":
        return pd.arrays.BooleanArray(values, mask)
    if dtype == "Float64":
        return pd.arrays.FloatingArray(values, mask)
    return pd.arrays.IntegerArray(values, mask)


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def file_metadata(input_size=None, extra: dict | None = None) -> dict[bytes, bytes]:
    """Key-value metadata written with every table."""
    meta = {
        "rfsearch_version": package_version("rfsearch"),
        "jax_version": package_version("jax"),
        "input_size": json.dumps(None if input_size is None else list(input_size)),
        "columns": json.dumps({c: d for c, (_, d) in COLUMNS.items()}),
        "semantics": "Araujo, Norris, Sim, Distill 2019; union at merges; TF 'same' padding",
        **(extra or {}),
    }
    return {k.encode(): str(v).encode() for k, v in meta.items()}


def to_arrow(df: pd.DataFrame) -> pa.Table:
    """The DataFrame as an Arrow table with the declared schema and metadata (a search's
    rows: :func:`search_schema`, its keys and choices as they are typed)."""
    if "search" in df.attrs or ("candidate_id" in df.columns and "error" not in df.columns):
        return _search_arrow(df)
    per_layer = "layer" in df.columns
    target = schema(per_layer, "feasible_max" in df.columns or "border" in df.columns,
                    "rf_d" in df.columns)
    missing = [c for c in target.names if c not in df.columns]
    if missing:
        raise SpecError(f"table lacks the result columns {missing} (write_parquet writes "
                        "whole result tables; pandas' to_parquet writes a selection)")
    table = pa.Table.from_pandas(df[target.names], schema=target, preserve_index=False)
    # Keep pyarrow's pandas metadata so pandas reads the nullable dtypes back as written.
    extra = {"analysis_rule": df.attrs["analysis_rule"]} if "analysis_rule" in df.attrs else {}
    meta = {**(table.schema.metadata or {}), **file_metadata(df.attrs.get("input_size"), extra)}
    return table.replace_schema_metadata(meta)


def schema_text(target: pa.Schema) -> str:
    """An Arrow schema as text, for a frame's ``attrs`` (which pyarrow keeps as JSON)."""
    return base64.b64encode(target.serialize().to_pybytes()).decode()


def schema_of_text(text: str | None) -> pa.Schema:
    """The schema :func:`schema_text` wrote (an empty one for None)."""
    return pa.schema([]) if not text else pa.ipc.read_schema(pa.py_buffer(
        base64.b64decode(text)))


def _search_arrow(df: pd.DataFrame) -> pa.Table:
    """Rows of ``rfsearch.search`` (or a selection of them) as an Arrow table: the result
    columns declared, the space's keys and choices as the search declared them
    (``attrs["search_schema"]``), other columns as pandas holds them."""
    depth, analysis = "rf_d" in df.columns, "n_unproductive" in df.columns
    declared = search_result(depth)[:None if analysis else -len(SEARCH_ANALYSIS)]
    missing = [c for c in declared if c not in df.columns]
    if missing:
        raise SpecError(f"search table lacks the result columns {missing} (write_parquet "
                        "writes whole result tables; pandas' to_parquet writes a selection)")
    own = [c for c in df.columns if c not in declared]
    own_types = pa.Schema.from_pandas(df[own], preserve_index=False) if own else []
    text = {pa.large_string(): pa.string()}  # pandas' str dtype: as the search writes it
    types = {f.name: text.get(f.type, f.type) for f in own_types}
    known = schema_of_text(df.attrs.get("search_schema"))
    fields = search_schema(types, {}, analysis, depth)
    inferred = pa.schema([pa.field(f.name, f.type) if f.name in types else f for f in fields])
    table = pa.Table.from_pandas(df[inferred.names], preserve_index=False)
    extra = df.attrs.get("search") or {}
    meta = {**(table.schema.metadata or {}), **file_metadata(df.attrs.get("input_size"), extra)}
    declared = pa.schema([known.field(f.name) if f.name in known.names else f
                          for f in inferred])  # keys and choices as the search declared them
    if not table.num_rows:  # pandas typed its empty columns as it could (a list as double)
        return declared.empty_table().replace_schema_metadata(meta)
    try:
        table = table.cast(declared)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        table = table.cast(inferred)  # the user retyped one
    return table.replace_schema_metadata(meta)


def write_parquet(data: pd.DataFrame | pa.Table, path, *, row_group_size: int = 1 << 20) -> None:
    """Write a result table to Parquet: declared schema, metadata, zstd compression."""
    table = data if isinstance(data, pa.Table) else to_arrow(data)
    pq.write_table(table, str(path), compression="zstd", row_group_size=row_group_size)


def check_writable(path, reads=(), suffix: str | None = None) -> str:
    """Fail before hours of work, not after: the output's folder must exist and be
    writable, the output must not be one of the files the work ``reads``, and a name with
    a suffix must have ``suffix`` (the format written)."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir() or str(path).endswith(("/", os.sep)):
        raise SpecError(f"{path}: cannot write the output: it names a folder, not a file")
    if suffix and target.suffix and target.suffix.lower() != suffix:
        raise SpecError(f"{path}: the output is written as {suffix[1:].title()}: name it "
                        f"{target.stem}{suffix}")
    if not folder.is_dir():
        raise SpecError(f"{path}: cannot write the output: no folder {str(folder)!r}")
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise SpecError(f"{path}: cannot write the output: permission denied")
    if target.exists() and any(isinstance(r, str | Path) and Path(r).exists()
                               and Path(r).samefile(target) for r in reads):
        raise SpecError(f"{path}: cannot write the output: it is an input (write elsewhere)")
    return str(path)
