"""Pictures (optional extra ``rfsearch[plot]``: matplotlib, headless ``Agg`` backend).

* :func:`growth`: receptive field (h and w) per layer of one or several networks, log
  scale, with the input size as a line and the border layer marked;
* :func:`boxes`: the receptive fields of chosen output features drawn over an image
  (a built-in synthetic one when none is given) with the effective-stride grid of
  feature centres, optionally a Gaussian effective-RF *proxy* heat map;
* :func:`results`: scatter / hexbin-like 2-D histogram / histogram of columns of a
  search result folder, read in batches (bounded memory, whatever the row count).

Each writes a PNG or SVG of ``size`` = (width, height) pixels and returns the path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from .axes import parse_input_sizes
from .coords import ReceptiveField
from .errors import SpecError
from .evaluate import evaluate
from .show import column
from .sources import resolve
from .spec import parse_input_size

DPI = 100
SCATTER_ROWS = 200_000  # above this a result plot is a 2-D histogram, never all points


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise SpecError("plots need matplotlib: pip install 'rfsearch[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure(size: tuple[int, int]):
    width, height = size
    if width < 100 or height < 100:
        raise SpecError(f"plot size must be at least 100x100 pixels, got {width}x{height}")
    plt = _pyplot()
    return plt, plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)


def _save(plt, fig, output) -> Path:
    path = Path(output)
    if path.suffix.lower() not in (".png", ".svg"):
        raise SpecError(f"{output}: plots are written as .png or .svg")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def growth_rows(specs, input_size=None) -> pd.DataFrame:
    """The per-layer rows :func:`growth` draws (an invalid network: its error row)."""
    return evaluate(specs, input_size=input_size, per_layer=True,
                    analysis=input_size is not None)


def growth(specs, output, *, input_size=None, size=(900, 540)) -> Path:
    """RF per layer (h solid, w dashed) for every valid network in ``specs`` (anything
    :func:`rfsearch.evaluate` takes, or the table of :func:`growth_rows`)."""
    plt, fig = _figure(size)
    ax = fig.add_subplot()
    df = specs if isinstance(specs, pd.DataFrame) else growth_rows(specs, input_size)
    if df["error"].notna().all():
        raise SpecError(f"nothing to plot: {df['error'].dropna().iloc[0]}")
    for (name, rows), color in zip(df[df["error"].isna()].groupby("name", sort=False),
                                   plt.rcParams["axes.prop_cycle"].by_key()["color"] * 10,
                                   strict=False):
        x = rows["layer"].to_numpy()
        axes = [a for a in ("d", "h", "w") if f"rf_{a}" in rows and rows[f"rf_{a}"].notna().any()]
        first = f"rf_{axes[0]}"  # the depth, the height, or a 1-D network's one axis
        ax.plot(x, rows[first].to_numpy(dtype=float), color=color, label=f"{name} ({axes[0]})")
        for a, style in zip(axes[1:], ("--", "-."), strict=False):
            if not rows[f"rf_{a}"].equals(rows[first]):
                ax.plot(x, rows[f"rf_{a}"].to_numpy(dtype=float), color=color, ls=style,
                        label=f"{name} ({a})")
        if "border" in rows and rows["border"].fillna(False).any():
            b = rows[rows["border"].fillna(False).astype(bool)].iloc[0]
            ax.plot([b["layer"]], [b[first]], "o", color=color, ms=8,
                    label=f"{name}: border {b['layer_name']}")
    if input_size is not None:  # along the first axis drawn (N: every axis)
        first_size = parse_input_sizes(input_size)[0]
        ax.axhline(first_size, color="grey", lw=1, ls=":", label=f"input {first_size} px")
    ax.set_yscale("log")
    ax.set_xlabel("layer (spec order)")
    ax.set_ylabel("receptive field (px)")
    ax.set_title("Receptive field growth")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(plt, fig, output)


def synthetic_image(height: int, width: int) -> np.ndarray:
    """A grey checkerboard with a soft radial gradient ([H, W, 3] floats in [0, 1])."""
    y, x = np.mgrid[0:height, 0:width]
    checker = ((y // 16 + x // 16) % 2) * 0.25 + 0.5
    r = np.hypot(y - height / 2, x - width / 2) / max(height, width)
    return np.clip(np.stack([checker - 0.3 * r, checker, checker + 0.2 * r], -1), 0, 1)


def _load_image(image):
    plt = _pyplot()
    try:
        img = plt.imread(str(image))
    except (OSError, ValueError, SyntaxError) as err:
        raise SpecError(f"{image}: cannot read the image ({err})") from None
    img = img.astype(float) / (255.0 if img.dtype == np.uint8 else 1.0)
    return img if img.ndim == 3 else np.stack([img] * 3, -1)


def _stride_label(row) -> str:
    """``stride 2`` (as ``show`` writes it: ``1/2x2`` per axis where they differ) from a
    result row, or that it has none (the paths of a merge disagree: uneven centres)."""
    stride = column(row, "stride", ("h", "w"))
    return "no single stride: paths disagree" if stride == "-" else f"stride {stride}"


def _one_plane(spec, h: int, w: int) -> pd.Series:
    """The result row of ``spec``, one valid 2-D network at ``h`` x ``w`` (else one line)."""
    src = resolve(spec, (h, w))[0]
    if src.errors or src.total != 1:
        raise SpecError(src.errors[0][2] if src.errors else
                        f"{src.label}: holds {src.total} specs; boxes takes one")
    dims = src.networks[0].dims if src.networks else 2  # a chain table's row is 2-D
    if dims != 2:
        raise SpecError(f"plot boxes draws 2-D networks over an image; "
                        f"{src.networks[0].name!r} has {dims} {'axis' if dims == 1 else 'axes'}")
    row = evaluate(spec, input_size=(h, w)).iloc[0]
    if isinstance(row["error"], str):
        raise SpecError(row["error"])
    return row


def _own_size(spec) -> tuple[int, int]:
    """The input size a model file or a size-bound imported spec holds at, else 224."""
    src = resolve(spec)[0]
    own = src.size or (src.networks[0].traced_at if len(src.networks) == 1 else None)
    return (own[0], own[1]) if own is not None and len(own) == 2 else (224, 224)


def boxes(spec, output, *, image=None, features=None, input_size=None, erf=False,
          size=(800, 800)) -> Path:
    """Receptive fields of ``features`` [(y, x), ...] over ``image`` (default: the output
    corners and centre) at the image's size (or ``input_size``, or the size an imported
    model was traced at, or 224)."""
    img = _load_image(image) if image is not None else None
    if img is not None:
        h, w = img.shape[:2]
    else:
        h, w = parse_input_size(input_size) if input_size is not None else _own_size(spec)
        img = synthetic_image(h, w)
    row = _one_plane(spec, h, w)
    rf = ReceptiveField.of(spec, (h, w))  # every unit's exact box (they may vary by unit)
    out_h, out_w = int(row["out_h"]), int(row["out_w"])
    if features is None:
        features = [(0, 0), (out_h // 2, out_w // 2), (out_h - 1, out_w - 1)]
    feats = np.array(features, dtype=np.int64).reshape(-1, 2)
    bad = (feats < 0).any(axis=1) | (feats[:, 0] >= out_h) | (feats[:, 1] >= out_w)
    if bad.any():
        fy, fx = (int(v) for v in feats[bad][0])
        raise SpecError(f"feature ({fy}, {fx}) is outside the {out_h}x{out_w} output")
    plt, fig = _figure(size)
    ax = fig.add_subplot()
    ax.imshow(img, extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    gy, gx = np.meshgrid(np.arange(out_h), np.arange(out_w), indexing="ij")
    centres = rf.center(gy.ravel(), gx.ravel())
    ax.plot(centres.x, centres.y, ".", color="white", ms=2, alpha=0.6,
            label=f"feature centres ({_stride_label(row)})")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (fy, fx), color in zip(feats, colors * 10, strict=False):
        box = rf.box(fy, fx)
        bh, bw = int(box.bottom - box.top + 1), int(box.right - box.left + 1)
        ax.add_patch(plt.Rectangle((box.left - 0.5, box.top - 0.5), bw, bh, fill=False, lw=2,
                                   ec=color, label=f"feature ({fy}, {fx}): {bh}x{bw} px"))
        if erf:
            c = rf.center(fy, fx)
            yy, xx = np.mgrid[0:h, 0:w]
            sigma = np.array(rf.rf, float) / 6  # a proxy: most mass within the centre third
            heat = np.exp(-((yy - c.y) ** 2 / (2 * sigma[0] ** 2)
                            + (xx - c.x) ** 2 / (2 * sigma[1] ** 2)))
            ax.imshow(np.ma.masked_less(heat, 0.05), cmap="magma", alpha=0.45,
                      extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    ax.set_xlim(min(-0.5, float(np.min(rf.box(feats[:, 0], feats[:, 1]).left)) - 2),
                max(w - 0.5, float(np.max(rf.box(feats[:, 0], feats[:, 1]).right)) + 2))
    ax.set_ylim(max(h - 0.5, float(np.max(rf.box(feats[:, 0], feats[:, 1]).bottom)) + 2),
                min(-0.5, float(np.min(rf.box(feats[:, 0], feats[:, 1]).top)) - 2))
    title = f"{row['name']} at {h}x{w}: receptive fields of output features"
    if erf:
        title += "\n(heat: Gaussian effective-RF PROXY, sigma = RF/6, not measured)"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save(plt, fig, output)


def _scan(folder, columns: list[str]):
    """Record batches of ``columns`` from a result folder (or file)."""
    import pyarrow.dataset as ds

    if not Path(folder).exists():
        raise SpecError(f"{folder}: no such file or folder")
    try:
        dataset = ds.dataset(str(folder), format="parquet", partitioning="hive",
                             exclude_invalid_files=True)  # --partition-by folders too
    except (OSError, ValueError) as err:
        raise SpecError(f"{folder}: cannot read a Parquet dataset ({err})") from None
    if not dataset.files:
        raise SpecError(f"{folder}: no Parquet files (a result table or a search folder)")
    missing = [c for c in columns if c not in dataset.schema.names]
    if missing:
        raise SpecError(f"{folder}: no column {missing[0]!r} (columns: "
                        f"{', '.join(dataset.schema.names)})")
    for c in columns:
        kind = dataset.schema.field(c).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                or pa.types.is_boolean(kind)):
            raise SpecError(f"{folder}: column {c!r} holds {kind}, not numbers")
    return dataset, dataset.scanner(columns=columns, batch_size=1 << 16)


def results(folder, output, *, x: str, y: str | None = None, hue: str | None = None,
            bins: int = 60, size=(900, 600)) -> Path:
    """Histogram of ``x`` (no ``y``), else a scatter (small results) or a 2-D histogram,
    computed over record batches so memory stays bounded."""
    columns = list(dict.fromkeys(c for c in (x, y, hue) if c is not None))
    dataset, scanner = _scan(folder, columns)
    rows = dataset.count_rows()
    if rows == 0:
        raise SpecError(f"{folder}: no rows to plot")
    lo = {c: np.inf for c in columns}
    hi = {c: -np.inf for c in columns}
    for batch in scanner.to_batches():  # pass 1: ranges
        for c in columns:
            v = batch.column(c).to_numpy(zero_copy_only=False).astype(float)
            v = v[np.isfinite(v)]
            if v.size:
                lo[c], hi[c] = min(lo[c], v.min()), max(hi[c], v.max())
    plt, fig = _figure(size)
    ax = fig.add_subplot()
    edges = {c: np.linspace(lo[c], hi[c] + (1 if hi[c] == lo[c] else 0), bins + 1)
             for c in columns if np.isfinite(lo[c])}
    if x not in edges or (y is not None and y not in edges):
        raise SpecError(f"{folder}: the plotted columns hold no values")
    if y is None:
        counts = np.zeros(bins)
        for batch in dataset.scanner(columns=[x], batch_size=1 << 16).to_batches():
            v = batch.column(x).to_numpy(zero_copy_only=False).astype(float)
            counts += np.histogram(v[np.isfinite(v)], edges[x])[0]
        ax.stairs(counts, edges[x], fill=True)
        ax.set_ylabel("candidates")
    elif rows <= SCATTER_ROWS:
        table = dataset.to_table(columns=columns)
        xs = table.column(x).to_numpy(zero_copy_only=False).astype(float)
        ys = table.column(y).to_numpy(zero_copy_only=False).astype(float)
        cs = (table.column(hue).to_numpy(zero_copy_only=False).astype(float)
              if hue else None)
        points = ax.scatter(xs, ys, c=cs, s=6, alpha=0.6, cmap="viridis" if hue else None)
        if hue:
            fig.colorbar(points, ax=ax, label=hue)
        ax.set_ylabel(y)
    else:
        counts = np.zeros((bins, bins))
        for batch in scanner.to_batches():
            xs = batch.column(x).to_numpy(zero_copy_only=False).astype(float)
            ys = batch.column(y).to_numpy(zero_copy_only=False).astype(float)
            ok = np.isfinite(xs) & np.isfinite(ys)
            counts += np.histogram2d(xs[ok], ys[ok], [edges[x], edges[y]])[0]
        mesh = ax.pcolormesh(edges[x], edges[y], np.ma.masked_equal(counts.T, 0),
                             cmap="viridis", norm="log")
        fig.colorbar(mesh, ax=ax, label="candidates per bin")
        ax.set_ylabel(y)
    ax.set_xlabel(x)
    ax.set_title(f"{Path(folder).name}: {rows:,} rows")
    fig.tight_layout()
    return _save(plt, fig, output)
