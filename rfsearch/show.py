"""The per-layer table and summary line that ``rfsearch show`` and ``zoo show`` print.

Values that agree on every axis print once (``3``), others per axis (``3x5``, depth
first in 3-D). A fractional stride prints as a fraction (``1/2``). A layer's own
columns (k, s, d, p) come from the parsed spec; the geometry columns (rf, stride,
padding, out) from :func:`rfsearch.evaluate`.
"""

from __future__ import annotations

import pandas as pd

from . import ops
from .axes import AXES
from .errors import SpecError
from .evaluate import evaluate
from .names import chain_layer
from .sources import resolve
from .spec import Layer

PAD_NAMES = {ops.PAD_SAME: "same", ops.PAD_SAME_LOWER: "same_lower"}


def fmt_axes(values) -> str:
    values = [str(v) for v in values]
    return values[0] if len(set(values)) == 1 else "x".join(values)


def _fmt_padding(layer: Layer) -> str:
    if layer.same:
        return PAD_NAMES[layer.same]
    if layer.pad_before == layer.pad_after:
        return fmt_axes(layer.pad_before)
    return "x".join(f"{b},{a}" for b, a in zip(layer.pad_before, layer.pad_after, strict=True))


def _layer_columns(layer: Layer) -> dict[str, str]:
    """k, s, d, p of one layer as ``show`` prints them."""
    if layer.code in ops.WHOLE_MAP.values():
        return {"k": "map", "s": "-", "d": "-", "p": "-"}
    if layer.code in (ops.UPSAMPLE, ops.PIXEL_SHUFFLE):
        name = layer.mode + ("/ac" if layer.align_corners else "")
        return {"k": name, "s": "1/" + fmt_axes(layer.factor), "d": "-", "p": "-"}
    columns = {"k": fmt_axes(layer.kernel), "s": fmt_axes(layer.stride),
               "d": fmt_axes(layer.dilation), "p": _fmt_padding(layer)}
    if layer.code == ops.CONV_TRANSPOSE:
        columns["s"] = "1/" + columns["s"]
        if any(layer.output_padding):
            columns["p"] += "+" + fmt_axes(layer.output_padding)
    return columns


def axes_of(row: pd.Series) -> tuple[str, ...]:
    """The axes a result row has values for (w alone for 1-D networks)."""
    present = [a for a in AXES[3] if f"rf_{a}" in row.index and not pd.isna(row[f"rf_{a}"])]
    return tuple(present) or AXES[2]


def column(row: pd.Series, name: str, axes: tuple[str, ...]) -> str:
    """One geometry column over the axes, '-' when unknown; strides as fractions."""
    values = []
    for a in axes:
        v = row.get(f"{name}_{a}")
        if v is None or pd.isna(v):
            return "-"
        den = row.get(f"stride_den_{a}") if name == "stride" else None
        values.append(f"{int(v)}/{int(den)}" if den is not None and not pd.isna(den)
                      and int(den) > 1 else str(int(v)))
    return fmt_axes(values)


def left_aligned(table: pd.DataFrame, columns) -> pd.DataFrame:
    """Text columns padded on the right, so ``to_string`` prints them left-aligned."""
    table = table.copy()
    for name in columns:
        width = max([len(name), *table[name].str.len()]) if len(table) else len(name)
        table[name] = table[name].str.ljust(width)
        table = table.rename(columns={name: name.ljust(width)})
    return table


def _batch_layers(batch) -> list[Layer]:
    """The layers of the first network of an encoded Batch (a chain table's row)."""
    def axes(field, node):
        return tuple(int(v) for v in getattr(batch, field)[0, node])
    layers = []
    for node in range(1, int(batch.length[0])):
        before = axes("pad_before", node)
        layers.append(Layer(chain_layer(node - 1), "conv", ops.CONV, (node - 1,),
                            axes("kernel", node), axes("stride", node), axes("dilation", node),
                            before, axes("pad_after", node), same=min(0, before[0])))
    return layers


def show_table(spec, input_size) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-layer table of one network, and its per-layer result rows."""
    src = resolve(spec, input_size)[0]
    if src.errors:
        raise SpecError(src.errors[0][2])
    if src.total != 1:
        raise SpecError(f"{src.label}: holds {src.total} specs; show takes one")
    layers = _batch_layers(src.batch) if src.batch is not None else src.networks[0].layers
    df = evaluate(src.batch if src.batch is not None else spec, input_size=input_size,
                  per_layer=True)
    if len(df) != len(layers) or df["layer_name"].isna().any():
        raise SpecError(str(df["error"].dropna().iloc[0]))  # the network's own row: why
    rows = []
    shown = ("rf", "stride", *(("period",) if _periodic(df) else ()), "padding", "out")
    for layer, (_, r) in zip(layers, df.iterrows(), strict=True):
        axes = axes_of(r)
        rows.append({"layer": r["layer_name"], "op": r["op"], **_layer_columns(layer),
                     **{c: column(r, c, axes) for c in shown}})
    return left_aligned(pd.DataFrame(rows), ["layer", "op"]), df


def _periodic(rows: pd.DataFrame) -> bool:
    """Whether some row's boxes repeat only after several units (period > 1): the table
    then shows the period, after which the stride holds."""
    return any(c in rows and (rows[c].fillna(1) > 1).any() for c in ("period_h", "period_w",
                                                                     "period_d"))


def summary_line(net: pd.Series, input_size) -> str:
    """``name at SIZE: rf ..., rf_min ..., stride ..., padding ..., out ..., aligned ...``."""
    axes, size = axes_of(net), ""
    if input_size:
        shown = (input_size,) if isinstance(input_size, int) else tuple(input_size)
        shown = shown * len(axes) if len(shown) == 1 else shown
        size = f" at {'x'.join(map(str, shown))}"
    if not pd.isna(net["error"]):
        return f"{net['name']}{size}: invalid"
    aligned = net["aligned"]
    alignment = "unknown" if pd.isna(aligned) else "yes" if aligned else "no"
    period = ("period",) if _periodic(net.to_frame().T) else ()
    parts = [f"{c} {column(net, c, axes)}"
             for c in ("rf", "rf_min", "stride", *period, "padding", "out")
             if c != "out" or input_size]
    return f"{net['name']}{size}: {', '.join(parts)}, aligned {alignment}"
