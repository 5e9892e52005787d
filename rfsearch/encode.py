"""Encoding: validated networks become a :class:`Batch` of padded integer arrays.

The design card. A network of ``n`` layers is ``n + 1`` nodes: node 0 is the
input, node ``i + 1`` is layer ``i``. Every node is "merge its inputs, then apply a
window", so one set of arrays describes chains and DAGs alike:

=============  ================  ==============================================
field          shape             meaning
=============  ================  ==============================================
op             [N, L]            op code (:mod:`rfsearch.ops`); 0 = input node
kernel         [N, L, 2]         kernel size (h, w); 1 for non-windowed nodes
stride         [N, L, 2]         stride
dilation       [N, L, 2]         dilation
pad_before     [N, L, 2]         top / left padding, or PAD_SAME / PAD_SAME_LOWER
pad_after      [N, L, 2]         bottom / right padding (0 for 'same' modes)
preds          [N, L, M]         input node indices, -1 = none
length         [N]               nodes in use (layers + 1)
output         [N]               output node index
=============  ================  ==============================================

Nodes past ``length`` are identity layers reading the node before, so padded
steps change nothing. L - 1 is rounded up to 8, 12, 16, 24, 32, 48, 64, ... and M
to 1, 2, 3, 4, 8, 16, ..., so a run compiles once per bucket, not once per network size.
Arrays are stored layer-major in memory (the kernel scans over layers and vectorises over N), and
indexed ``[N, L, ...]``: ``Batch.layer_major(name)`` gives the contiguous
``[L, ..., N]`` view the kernel reads. When every layer of every network is square
(h = w for each parameter, the common case), the five parameter fields store one axis
and are read-only broadcast views on the last axis (stride 0, ``Batch.square``): half the
memory, and the kernel then computes one axis at a square or unknown input size.
The unrolled chain program reads its parameters through :func:`tiled` views instead
(``[N / T, L, A, T]``), which the device transfer copies into contiguous tiles.

Rational jumps (upsampling, transposed convolution) fit this card as one more
op code and an ``upsample`` factor array [N, L, 2]; the kernel then carries the
jump as a numerator / denominator pair instead of an integer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import ops
from .axes import MAX_PARAM
from .errors import SpecError
from .names import NumberedNames
from .spec import Network, parse_network

MIN_LAYER_BUCKET = 8
PARAM_FIELDS = ("kernel", "stride", "dilation", "pad_before", "pad_after")


def depth_bucket(nodes: int) -> int:
    """Padded node count L: the input node plus a bucketed number of layers.

    Layer buckets are 8, 12, 16, 24, 32, 48, 64, 96, ... (2^k and 1.5 * 2^k), so
    padding wastes at most a third of the scan and a run compiles a few times.
    """
    layers = max(int(nodes) - 1, MIN_LAYER_BUCKET)
    power = 1 << (layers - 1).bit_length()  # next power of two >= layers
    return 1 + (power * 3 // 4 if layers <= power * 3 // 4 else power)


def fan_in_bucket(fan_in: int) -> int:
    """Padded number of input slots per node: 1, 2, 3, 4, then 8, 16, ...

    Every slot costs a gather per node, so the small counts NAS cells use are exact."""
    fan_in = max(1, int(fan_in))
    return fan_in if fan_in <= 4 else 1 << (fan_in - 1).bit_length()


def param_dtype(*arrays: np.ndarray) -> np.dtype:
    """The narrowest signed dtype holding every value (int8, int16 or int32)."""
    top = max((max(int(a.max()), -int(a.min())) for a in arrays if a.size), default=0)
    for dtype in (np.int8, np.int16, np.int32):
        if top <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise SpecError(f"layer parameters must be at most {MAX_PARAM}, got {top}")


def _layer_major(shape_nl: tuple[int, ...], dtype) -> np.ndarray:
    """An [N, L, ...] array whose memory is laid out [L, ..., N]."""
    n, rest = shape_nl[0], shape_nl[1:]
    return np.moveaxis(np.empty((*rest, n), dtype), -1, 0)


def square_view(major: np.ndarray) -> np.ndarray:
    """A layer-major [L, 1, N] parameter array as the [N, L, 2] field of a square Batch:
    a read-only view whose h and w entries are the same memory."""
    depth, _, n = major.shape
    return np.moveaxis(np.broadcast_to(major, (depth, 2, n)), -1, 0)


def tiled(major: np.ndarray, width: int) -> np.ndarray:
    """A layer-major [L, A, N] array viewed as [N / width, L, A, width] (N a multiple of
    ``width``; no copy). The device transfer makes it contiguous, every layer of ``width``
    networks in one block, and copies these views as fast as layer-major rows."""
    depth, axes, n = major.shape
    return major.reshape(depth, axes, n // width, width).transpose(2, 0, 1, 3)


def squared(fields: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Parameter fields ([N, L, 2] each) in square storage when every h entry equals its
    w entry, else unchanged."""
    if not all((a[..., 0] == a[..., 1]).all() for a in fields.values()):
        return fields
    return {name: square_view(np.ascontiguousarray(np.moveaxis(a[..., :1], 0, -1)))
            for name, a in fields.items()}


@dataclass(frozen=True)
class Batch:
    """Networks as padded arrays (see the module docstring for the card).

    Batches built by :func:`encode` and :func:`chains` are data to read: square parameter
    fields and chain input slots are read-only views (several fields may share memory).
    Build a new Batch (``dataclasses.replace``) rather than writing into one."""

    op: np.ndarray  # [N, L] int8
    kernel: np.ndarray  # [N, L, 2]
    stride: np.ndarray  # [N, L, 2]
    dilation: np.ndarray  # [N, L, 2]
    pad_before: np.ndarray  # [N, L, 2]
    pad_after: np.ndarray  # [N, L, 2]
    preds: np.ndarray  # [N, L, M] int32, -1 = none
    length: np.ndarray  # [N] int32
    output: np.ndarray  # [N] int32
    names: np.ndarray | NumberedNames  # [N] str (object array) or default numbered names
    layer_names: tuple[tuple[str, ...], ...] | None = None  # per network, per layer
    layer_ops: tuple[tuple[str, ...], ...] | None = None
    is_chain: bool = field(default=False)  # every node reads the one before it
    has_same: bool = field(default=True)  # some layer pads 'same' / 'same_lower'
    has_whole: bool = field(default=True)  # some layer reads the whole map

    def __len__(self) -> int:
        return int(self.op.shape[0])

    @property
    def depth(self) -> int:
        """L, the padded node count."""
        return int(self.op.shape[1])

    @property
    def fan_in(self) -> int:
        """M, the padded number of input slots."""
        return int(self.preds.shape[2])

    @property
    def square(self) -> bool:
        """Every parameter field stores one axis for both (see :func:`square_view`)."""
        return all(isinstance(a, np.ndarray) and a.strides[-1] == 0
                   for a in (getattr(self, name) for name in PARAM_FIELDS))

    def layer_major(self, name: str) -> np.ndarray:
        """Field ``name`` as a C-contiguous [L, ..., N] array (no copy when possible)."""
        return np.ascontiguousarray(np.moveaxis(getattr(self, name), 0, -1))

    def axes_major(self, name: str, axes: int) -> np.ndarray:
        """Parameter field ``name`` as a layer-major [L, axes, N] view (no copy); one axis
        (the h entries) is only meaningful for a square batch."""
        return np.moveaxis(getattr(self, name), 0, -1)[:, :axes]

    def layer_name_codes(self) -> tuple[list[str], np.ndarray]:
        """(vocabulary, codes [N, L - 1]) of the layer names, node 1 first (-1 past a
        network's layers): one small table for networks that share their names."""
        vocab: dict[str, int] = {}
        codes = np.full((len(self), self.depth - 1), -1, np.int32)
        for i, names in enumerate(self.layer_names or ()):
            codes[i, :len(names)] = [vocab.setdefault(name, len(vocab)) for name in names]
        return list(vocab), codes

    def take(self, rows: np.ndarray | slice) -> Batch:
        """The sub-batch of the given candidate rows (square storage is kept)."""
        idx = np.arange(len(self))[rows]
        def pick(t):
            return (None if t is None else tuple(t[i] for i in idx))
        square = self.square
        arrays = {}
        for name in ("op", *PARAM_FIELDS, "preds"):
            src = getattr(self, name)
            if square and name in PARAM_FIELDS:
                arrays[name] = square_view(np.ascontiguousarray(
                    self.axes_major(name, 1)[..., idx]))
                continue
            out = _layer_major((len(idx), *src.shape[1:]), src.dtype)
            out[...] = src[idx]
            arrays[name] = out
        return Batch(
            **arrays, length=self.length[idx], output=self.output[idx], names=self.names[idx],
            layer_names=pick(self.layer_names), layer_ops=pick(self.layer_ops),
            is_chain=self.is_chain, has_same=self.has_same, has_whole=self.has_whole,
        )


def encode_networks(networks: Sequence[Network]) -> Batch:
    """Pack validated networks into one Batch (see the module docstring). Networks that
    need the periodic program (:attr:`rfsearch.spec.Network.periodic`) are refused."""
    periodic = next((net for net in networks if net.periodic), None)
    if periodic is not None:
        raise SpecError(f"{periodic.name!r}: resampling, crops, ceil-mode pools, negative "
                        "padding and 1-D / 3-D networks run in evaluate(), not in this "
                        "integer encoding (nor in search spaces, yet)")
    layers = [lay for net in networks for lay in net.layers]
    M = fan_in_bucket(max((len(lay.inputs) for lay in layers), default=1))
    fan = np.full((len(layers), M), -1, dtype=np.int32)
    for i, lay in enumerate(layers):
        fan[i, : len(lay.inputs)] = lay.inputs
    return pack(
        np.array([len(net.layers) + 1 for net in networks], dtype=np.int32),
        np.array([lay.code for lay in layers], dtype=np.int8),
        {name: np.array([getattr(lay, name) for lay in layers], dtype=np.int64).reshape(-1, 2)
         for name in PARAM_FIELDS},
        fan,
        output=np.array([net.output for net in networks], dtype=np.int32),
        names=np.array([net.name for net in networks], dtype=object),
        layer_names=tuple(tuple(lay.name for lay in net.layers) for net in networks),
        layer_ops=tuple(tuple(lay.op for lay in net.layers) for net in networks),
        is_chain=all(net.is_chain for net in networks),
    )


def pack(nodes: np.ndarray, codes: np.ndarray, flat: dict[str, np.ndarray],
         fan: np.ndarray | None, **fields) -> Batch:
    """A Batch from flat per-layer records, network after network: ``nodes`` [N] (layers
    + 1 each), ``codes`` [n] op codes, ``flat`` the [n, 2] parameter fields, ``fan``
    [n, M] input nodes (-1 = none; None: every layer reads the node before it), and the
    Batch's per-network ``fields``; one scatter into the padded arrays."""
    n = len(nodes)
    L = depth_bucket(nodes.max(initial=1))
    M = 1 if fan is None else fan.shape[1]
    rows = np.repeat(np.arange(n), nodes - 1)
    cols = np.arange(len(rows)) - np.repeat(np.cumsum(nodes - 1) - (nodes - 1), nodes - 1) + 1
    dtype = param_dtype(*flat.values())
    arrays = {}
    for name in PARAM_FIELDS:
        arr = _layer_major((n, L, 2), dtype)
        arr[...] = 0 if name.startswith("pad") else 1
        arr[rows, cols] = flat[name]
        arrays[name] = arr
    arrays = squared(arrays)
    op = _layer_major((n, L), np.int8)
    op[...] = ops.ELEMENTWISE
    op[:, 0] = ops.INPUT
    op[rows, cols] = codes
    preds = _layer_major((n, L, M), np.int32)
    preds[...] = -1
    preds[:, :, 0] = np.arange(L, dtype=np.int32) - 1  # padding nodes read the one before
    if fan is not None:
        preds[rows, cols] = fan
    return Batch(op=op, preds=preds, **arrays, length=nodes,
                 has_same=bool((flat["pad_before"] < 0).any()),
                 has_whole=bool(np.isin(codes, (ops.GLOBAL_POOL, ops.DENSE)).any()), **fields)


def encode(specs) -> Batch:
    """Validate spec dicts (one or a list) and encode them; raise SpecError on the first bad one."""
    if isinstance(specs, dict):
        specs = [specs]
    return encode_networks([parse_network(raw, i) for i, raw in enumerate(specs)])
