"""The ``rfsearch`` command: a thin layer over the library.

Exit codes: 0 every row valid; 1 bad input (valid rows are still written, bad
rows carry their ``error``); 2 usage errors. Every message is one line.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from . import __version__
from .driver import DEFAULT_CHUNK, parse_input_size
from .errors import SpecError
from .evaluate import evaluate, sources
from .table import write_parquet

MAX_MESSAGES = 20


def _input_size(text: str):
    try:
        return parse_input_size(text)
    except SpecError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _report_errors(df: pd.DataFrame) -> int:
    """Print each error once (one line each) to stderr; return 1 if there were any."""
    errors = df["error"].dropna().drop_duplicates()
    for message in errors.iloc[:MAX_MESSAGES]:
        print(f"rfsearch: {message}", file=sys.stderr)
    if len(errors) > MAX_MESSAGES:
        print(f"rfsearch: ... and {len(errors) - MAX_MESSAGES} more errors (see the 'error' "
              "column)", file=sys.stderr)
    return 1 if len(errors) else 0


def cmd_eval(args) -> int:
    df = evaluate(args.specs, input_size=args.input_size, per_layer=args.per_layer,
                  progress=not args.quiet and args.output is not None, chunk_size=args.chunk_size)
    if args.output:
        write_parquet(df, args.output)
        if not args.quiet:
            valid = int(df["error"].isna().sum())
            print(f"wrote {len(df)} rows ({valid} valid) to {args.output}", file=sys.stderr)
    else:
        with pd.option_context("display.max_rows", None, "display.width", 200):
            print(df.drop(columns="error").to_string(index=False) if len(df) else "(no rows)")
    return _report_errors(df)


def _fmt_pair(h, w) -> str:
    return str(h) if h == w else f"{h}x{w}"


def _fmt_padding(before, after) -> str:
    codes = {-1: "same", -2: "same_lower"}
    if before[0] in codes:
        return codes[int(before[0])]
    if tuple(before) == tuple(after):
        return _fmt_pair(int(before[0]), int(before[1]))
    return f"{before[0]},{after[0]}x{before[1]},{after[1]}"


def _pair_column(row, column: str) -> str:
    h, w = row[f"{column}_h"], row[f"{column}_w"]
    return "-" if pd.isna(h) or pd.isna(w) else _fmt_pair(h, w)


def show_table(spec, input_size) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-layer table of one network, as shown by ``rfsearch show``."""
    src = sources(spec)[0]
    if src.errors:
        raise SpecError(src.errors[0][2])
    if len(src.networks) != 1:
        raise SpecError(f"{src.label}: holds {len(src.networks)} specs; show takes one")
    df = evaluate(spec, input_size=input_size, per_layer=True)
    rows = []
    for lay, (_, r) in zip(src.networks[0].layers, df.iterrows(), strict=True):
        rows.append({
            "layer": lay.name, "op": lay.op, "k": _fmt_pair(*lay.kernel),
            "s": _fmt_pair(*lay.stride), "d": _fmt_pair(*lay.dilation),
            "p": _fmt_padding(lay.pad_before, lay.pad_after),
            **{c: _pair_column(r, c) for c in ("rf", "stride", "padding", "out")},
        })
    return pd.DataFrame(rows), df


def cmd_show(args) -> int:
    table, df = show_table(args.spec, args.input_size)
    print(f"{df['name'].iloc[0]}" + (f" at {args.input_size[0]}x{args.input_size[1]}"
                                      if args.input_size else ""))
    print(table.to_string(index=False))
    return _report_errors(df)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rfsearch",
        description="Exact receptive fields of CNNs, for one network or millions.")
    parser.add_argument("--version", action="version", version=f"rfsearch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("eval", help="evaluate spec files into a table (Parquet with -o)")
    ev.add_argument("specs", nargs="+", help="spec files: .json, .jsonl, .yaml, .parquet")
    ev.add_argument("-o", "--output", help="write a Parquet file instead of printing")
    ev.add_argument("--input-size", type=_input_size, help="N or HxW, e.g. 224 or 224x320")
    ev.add_argument("--per-layer", action="store_true", help="one row per (network, layer)")
    ev.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK,
                    help=f"candidates per kernel call (default {DEFAULT_CHUNK})")
    ev.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    ev.set_defaults(func=cmd_eval)

    sh = sub.add_parser("show", help="per-layer table of one network")
    sh.add_argument("spec", help="a spec file holding one network")
    sh.add_argument("--input-size", type=_input_size, help="N or HxW")
    sh.set_defaults(func=cmd_show)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SpecError as err:
        print(f"rfsearch: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"rfsearch: {err.filename or ''}: {err.strerror or err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
