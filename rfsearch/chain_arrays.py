"""``chains``: a Batch of convolution chains straight from integer arrays, without a loop
over candidates.

Users hold chains as [N, L] arrays, network-major; the kernel reads them layer-major
([L, A, N], see :mod:`rfsearch.encode`) in the narrowest integer type that holds every
value. One pass over each array does both, block by block on every core: a block of
rows is read once, its range taken while it is in cache, and written transposed into
int8. Only when some value needs more than 8 bits (or is out of range: then the error
names the first bad entry) is a second pass made.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from . import ops
from .axes import MAX_PARAM
from .encode import Batch, depth_bucket, square_view
from .errors import SpecError
from .names import NumberedNames, numbered
from .threads import concurrently, cores

TRANSPOSE_BLOCK = 4096  # candidates per block: [N, L] -> [L, N] copies stay in cache
NARROW = (np.int8, np.int16, np.int32)  # parameter types, narrowest first


@dataclass(frozen=True)
class Field:
    """One parameter of the chains as given: an [N, L, 1] or [N, L, 2] integer view."""

    name: str  # the Batch field
    label: str  # the argument of chains() it comes from, for messages
    values: np.ndarray  # [N, L, 1 or 2]
    minimum: int  # smallest allowed value
    fill: int  # the identity value of layers past a chain's length

    @property
    def constant(self) -> bool:
        """One value for every entry (a scalar argument)."""
        return not any(self.values.strides)


def default_names(rows) -> NumberedNames:
    """'chain{i}' for each row index (strings only when a table needs them)."""
    return numbered("chain", rows)


def _names(names, n: int) -> np.ndarray | NumberedNames:
    """The chains' names: default ones for None, else a sequence of N (any values: the
    table writes them as text)."""
    if names is None:
        return default_names(np.arange(n))
    if isinstance(names, NumberedNames):
        given = names
    elif isinstance(names, str | bytes) or np.ndim(names) != 1:
        raise SpecError(f"names must be a sequence of {n} names, got {names!r:.40}")
    else:
        given = np.asarray(names, dtype=object)
    if len(given) != n:
        raise SpecError(f"names must hold {n} names, got {len(given)}")
    if isinstance(given, np.ndarray):  # a missing name is the default one, as in tables
        missing = np.equal(given, None).astype(bool)
        if missing.any():
            given = given.copy()
            given[missing] = np.asarray(default_names(np.nonzero(missing)[0]), dtype=object)
    return given


def _as_axes(a, label: str, shape: tuple[int, int]) -> np.ndarray:
    """Scalar, [N, L] or [N, L, 2] integers -> an [N, L, 1 or 2] view (no copy)."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "iu":
        raise SpecError(f"{label} must be an integer array, got dtype {arr.dtype}")
    if arr.ndim == 0:
        arr = np.broadcast_to(arr, shape)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2) or arr.shape[:2] != shape:
        raise SpecError(f"{label} must have shape [N, L] or [N, L, 2] with N, L = "
                        f"{shape[0]}, {shape[1]}, got {list(arr.shape)}")
    return arr


def _range_error(field: Field) -> SpecError:
    """The first entry of ``field`` outside [minimum, MAX_PARAM], as a message."""
    arr = field.values
    kind = "a positive integer" if field.minimum == 1 else "a non-negative integer"
    bad = np.argwhere((arr < field.minimum) | (arr > MAX_PARAM))[0]
    where = "" if field.constant else f"spec #{bad[0]}, layer #{bad[1]}: "
    return SpecError(f"{where}{field.label} must be {kind} at most {MAX_PARAM}, got "
                     f"{int(arr[tuple(bad)])}")


def _fields(kernel, stride, dilation, padding) -> list[Field]:
    """The parameter fields of :func:`chains`' arguments, shapes checked (padding first,
    as messages name it)."""
    try:
        k = np.asarray(kernel)
    except ValueError:  # a ragged list of lists
        raise SpecError("kernel must be an [N, L] array (chains of different lengths: pad "
                        "them and pass lengths=...)") from None
    if k.ndim not in (2, 3):
        raise SpecError(f"kernel must have shape [N, L] or [N, L, 2], got {list(k.shape)}")
    shape = k.shape[:2]
    pad = np.asarray(padding)
    if pad.ndim == 4:
        if pad.shape[2:] != (2, 2):
            raise SpecError(f"padding must have shape [N, L, 2, 2], got {list(pad.shape)}")
        before, after = (_as_axes(pad[..., side], "padding", shape) for side in (0, 1))
    else:
        before = after = _as_axes(pad, "padding", shape)
    return [Field("pad_before", "padding", before, 0, 0),
            Field("pad_after", "padding", after, 0, 0),
            Field("kernel", "kernel", _as_axes(k, "kernel", shape), 1, 1),
            Field("stride", "stride", _as_axes(stride, "stride", shape), 1, 1),
            Field("dilation", "dilation", _as_axes(dilation, "dilation", shape), 1, 1)]


def _chain_lengths(lengths, n: int, depth: int) -> np.ndarray:
    """Layers in use per chain, validated: [N] int64."""
    given = np.asarray(lengths if lengths is not None else np.full(n, depth))
    if (given.shape != (n,) or given.dtype.kind not in "iu" or (given < 1).any()
            or (given > depth).any()):
        raise SpecError(f"lengths must be {n} integers between 1 and {depth}")
    return given.astype(np.int64)


def _copy_rows(dst: np.ndarray, field: Field, rows: range, used: np.ndarray | None):
    """dst [depth, A, N] <- the field's rows ([N, depth, 1 or 2]), block by block, then
    its identity where a layer is past the chain's length ``used`` [N]; returns the
    (min, max) of the rows as given, or None for no rows."""
    depth, axes = dst.shape[:2]
    layer = np.arange(depth)[:, None, None]  # [depth, 1, 1]
    lo = hi = None
    for start in range(rows.start, rows.stop, TRANSPOSE_BLOCK):
        block = slice(start, min(rows.stop, start + TRANSPOSE_BLOCK))
        values = field.values[block]  # [b, depth, 1 or 2], in cache from here on
        low, high = int(values.min()), int(values.max())
        lo, hi = (low, high) if lo is None else (min(lo, low), max(hi, high))
        out = dst[..., block]  # [depth, A, b]
        out[...] = np.moveaxis(values[..., :axes], 0, -1)
        if used is not None:
            np.copyto(out, np.asarray(field.fill, out.dtype), where=layer >= used[block])
    return None if lo is None else (lo, hi)


def _layer_major(fields: list[Field], nodes: int, axes: int, dtype,
                 used: np.ndarray | None) -> tuple[dict[str, np.ndarray], dict]:
    """Each field as a layer-major [nodes, A, N] array of ``dtype`` (node 0 and nodes past
    the fields' depth hold the identity), and each field's (min, max) as given (None:
    no entries). Blocks of rows run on every core."""
    n, depth = fields[0].values.shape[:2]
    arrays, ranges, jobs = {}, {}, []
    parts = max(1, min(cores(), -(-n // TRANSPOSE_BLOCK)))
    bounds = np.linspace(0, n, parts + 1).astype(int)
    for field in fields:
        if field.name == "pad_after" and field.values is fields[0].values and axes == 1:
            arrays[field.name] = arrays["pad_before"]  # symmetric padding: one array
            continue
        major = np.empty((nodes, axes, n), dtype)  # [nodes, A, N]
        major[0] = field.fill
        major[depth + 1:] = field.fill
        arrays[field.name] = major
        if field.constant and n:
            ranges[field.name] = [_constant(major[1:depth + 1], field, used)]
            continue
        jobs += [(field, range(a, b)) for a, b in itertools.pairwise(bounds)]
    done = concurrently(lambda job: _copy_rows(arrays[job[0].name][1:depth + 1], *job, used),
                        jobs)
    for (field, _), found in zip(jobs, done, strict=True):
        ranges.setdefault(field.name, []).append(found)
    return arrays, {name: _union(parts) for name, parts in ranges.items()}


def _constant(dst: np.ndarray, field: Field, used: np.ndarray | None) -> tuple[int, int]:
    """dst [depth, A, N] <- the field's one value (the identity past ``used``)."""
    value = int(field.values.flat[0])
    dst[...] = np.asarray(value).astype(dst.dtype)  # wraps as the copied rows do; the range
    # decides the type, and a value too wide for this one is written again, wider
    if used is not None:
        np.copyto(dst, np.asarray(field.fill, dst.dtype),
                  where=np.arange(dst.shape[0])[:, None, None] >= used)
    return value, value


def _union(parts: list) -> tuple[int, int] | None:
    """The (min, max) of several (min, max) pairs (None: no entries)."""
    found = [p for p in parts if p is not None]
    return (min(lo for lo, _ in found), max(hi for _, hi in found)) if found else None


def _narrowest(fields: list[Field], ranges: dict) -> np.dtype:
    """The narrowest type of NARROW holding every value; an out-of-range value is an
    error naming its first entry (fields in order)."""
    for field in fields:
        found = ranges.get(field.name)
        if found is not None and (found[0] < field.minimum or found[1] > MAX_PARAM):
            raise _range_error(field)
    top = max((max(hi, -lo) for lo, hi in filter(None, ranges.values())), default=0)
    return np.dtype(next(t for t in NARROW if top <= np.iinfo(t).max))


def _check_k_eff(fields: list[Field], ranges: dict) -> None:
    """dilation * (kernel - 1) + 1 within MAX_PARAM (a bound first, exact only if needed)."""
    if ranges.get("kernel") is None:
        return
    kmax, dmax = ranges["kernel"][1], ranges["dilation"][1]
    if (kmax - 1) * dmax + 1 > MAX_PARAM:
        by_name = {f.name: f.values for f in fields}
        k_eff = by_name["dilation"].astype(np.int64) * (by_name["kernel"] - 1) + 1
        if k_eff.max() > MAX_PARAM:
            bad = np.argwhere(k_eff > MAX_PARAM)[0]
            raise SpecError(f"spec #{bad[0]}, layer #{bad[1]}: dilation*(kernel-1)+1 must be "
                            f"at most {MAX_PARAM}, got {int(k_eff[tuple(bad)])}")


def _ops(nodes: int, depth: int, n: int, cut: np.ndarray | None) -> np.ndarray:
    """The op codes, layer-major [nodes, N]: the input, a conv per layer in use, and
    identity (element-wise) nodes after; one shared read-only column when every chain
    uses every layer."""
    column = np.full(nodes, ops.ELEMENTWISE, np.int8)  # [nodes]
    column[0] = ops.INPUT
    column[1:depth + 1] = ops.CONV
    if cut is None:
        return np.broadcast_to(column[:, None], (nodes, n))
    live = np.arange(nodes)[:, None] <= cut  # [nodes, N]: the input and the layers in use
    return np.where(live, column[:, None], np.int8(ops.ELEMENTWISE))


def chains(kernel, stride=1, dilation=1, padding=0, *, lengths=None, names=None,
           padded=False) -> Batch:
    """A Batch of chains of convolutions straight from integer arrays, without a loop.

    ``kernel``, ``stride``, ``dilation``: [N, L] (square) or [N, L, 2] (h, w); scalars
    broadcast. ``padding``: [N, L] / [N, L, 2] symmetric, or [N, L, 2, 2] with
    ``padding[n, l, axis] = (before, after)``, as the spec's [[top, bottom], [left, right]].
    ``lengths`` [N]: layers in use per chain (default L); later layers are ignored, or,
    with ``padded=True``, promised to hold identity values already (kernel, stride and
    dilation 1, padding 0, as ragged tables read by :func:`rfsearch.read_chains` do), which
    saves rewriting them. ``names`` [N]: default 'chain{i}'. When every field is square
    ([N, L] or scalar), the Batch stores one axis (``Batch.square``). The input slots of a
    chain's nodes are one shared read-only array.
    """
    fields = _fields(kernel, stride, dilation, padding)
    n, depth = fields[0].values.shape[:2]
    used = _chain_lengths(lengths, n, depth)
    names = _names(names, n)
    nodes = depth_bucket(depth + 1)
    axes = 1 if all(f.values.shape[-1] == 1 for f in fields) else 2
    cut = None if lengths is None else used  # [N]
    param_cut = None if padded else cut
    arrays, ranges = _layer_major(fields, nodes, axes, np.int8, param_cut)
    dtype = _narrowest(fields, ranges)
    _check_k_eff(fields, ranges)
    if dtype != np.int8:  # some value needs more than 8 bits: write them again, wider
        arrays, _ = _layer_major(fields, nodes, axes, dtype, param_cut)
    preds = np.broadcast_to((np.arange(nodes, dtype=np.int32) - 1)[:, None, None],
                            (nodes, 1, n))  # [nodes, 1, N]
    return Batch(
        op=_ops(nodes, depth, n, cut).T,
        preds=np.moveaxis(preds, -1, 0),
        **{name: square_view(a) if axes == 1 else np.moveaxis(a, -1, 0)
           for name, a in arrays.items()},
        length=(used + 1).astype(np.int32), output=used.astype(np.int32),
        names=names, is_chain=True, has_same=False, has_whole=False,
    )
