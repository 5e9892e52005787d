"""The ``rfsearch`` command: a thin layer over the library.

Exit codes: 0 every row valid; 1 bad input (valid rows are still written, bad
rows carry their ``error``); 2 usage errors. Every message is one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from . import __version__, zoo
from .axes import parse_input_sizes
from .cli_cluster import cluster_options, process_of, summary
from .cli_import import import_parser
from .cli_run import run_command
from .driver import DAG_CHUNK, NATIVE_CHAIN_CHUNK, NATIVE_DAG_CHUNK, UNROLLED_CHUNK
from .driver import DEFAULT_CHUNK as DEFAULT_CHUNK_ROWS
from .errors import SpecError
from .evaluate import evaluate
from .kernel import TILE
from .search import search
from .search.runner import ACCELERATOR_CHUNK, DEFAULT_CHUNK, option_conflict
from .show import left_aligned, show_table, summary_line
from .spaces import BUILTIN, candidates
from .spec import parse_input_size
from .stream import evaluate_parquet, streamable
from .table import PARQUET, check_writable, write_parquet

MAX_MESSAGES = 20


def _input_size(text: str):
    """A 2-D input size (search spaces, plots)."""
    try:
        return parse_input_size(text)
    except SpecError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _input_sizes(text: str):
    """L, HxW or DxHxW (eval, show)."""
    try:
        return parse_input_sizes(text)
    except SpecError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _integer_from(least: int):
    """An argparse type: a decimal integer of at least ``least`` (0 or 1)."""
    def parse(text: str) -> int:
        if not (text.isascii() and text.isdigit()) or int(text) < least:
            kind = "positive" if least else "non-negative"
            raise argparse.ArgumentTypeError(f"must be a {kind} integer, got {text!r}")
        return int(text)
    return parse


_positive, _non_negative = _integer_from(1), _integer_from(0)


def _report_errors(df: pd.DataFrame) -> int:
    """Print each error once (one line each) to stderr; return 1 if there were any."""
    errors = df["error"].dropna().drop_duplicates()
    for message in errors.iloc[:MAX_MESSAGES]:
        print(f"rfsearch: {message}", file=sys.stderr)
    if len(errors) > MAX_MESSAGES:
        print(f"rfsearch: ... and {len(errors) - MAX_MESSAGES} more errors (see the 'error' "
              "column)", file=sys.stderr)
    return 1 if len(errors) else 0


def _progress_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--progress", action="store_true",
                       help="draw a progress bar even when standard error is not a terminal "
                            "or the rows are printed")
    group.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")


def _progress(args) -> bool:
    """A bar while writing a file, on a terminal (a bar drawn into a pipe or a log file
    leaves carriage-return frames there); --progress asks for one anyway, printing too."""
    if args.quiet:
        return False
    return args.progress or (args.output is not None and sys.stderr.isatty())


def cmd_eval(args) -> int:
    if args.output:
        check_writable(args.output, reads=args.specs, suffix=PARQUET)
    if streamable(args.specs, args.output):
        return _eval_stream(args)
    df = evaluate(args.specs, input_size=args.input_size, per_layer=args.per_layer,
                  progress=_progress(args), chunk_size=args.chunk_size,
                  analysis=args.analysis, exempt_1x1=args.exempt_1x1)
    if args.output:
        try:
            write_parquet(df, args.output)
        except OSError as err:
            raise SpecError(f"{args.output}: cannot write the output ({err})") from None
        if not args.quiet:
            valid = int(df["error"].isna().sum())
            print(f"wrote {len(df)} rows ({valid} valid) to {args.output}", file=sys.stderr)
    else:
        with pd.option_context("display.max_rows", None, "display.width", 200):
            print(df.drop(columns="error").to_string(index=False) if len(df) else "(no rows)")
    return _report_errors(df)


def _eval_stream(args) -> int:
    """One chain table into Parquet, a record batch at a time (bounded memory)."""
    rows, failed, messages = evaluate_parquet(
        args.specs[0], args.output, input_size=args.input_size, per_layer=args.per_layer,
        analysis=args.analysis, exempt_1x1=args.exempt_1x1, progress=_progress(args),
        messages=MAX_MESSAGES, chunk_size=args.chunk_size)
    if not args.quiet:
        print(f"wrote {rows} rows ({rows - failed} valid) to {args.output}", file=sys.stderr)
    for message in messages:
        print(f"rfsearch: {message}", file=sys.stderr)
    if failed > len(messages):
        print("rfsearch: ... and more errors (see the 'error' column)", file=sys.stderr)
    return 1 if failed else 0


def cmd_show(args) -> int:
    table, df = show_table(args.spec, args.input_size)
    nets = evaluate(args.spec, input_size=args.input_size)  # a model file: at its own size
    print(summary_line(nets.iloc[0], args.input_size or nets.attrs["input_size"]))
    print(table.to_string(index=False))
    return _report_errors(df)


def cmd_zoo_list(args) -> int:
    rows = [{"name": name, "family": entry.family,
             "arguments": ", ".join(entry.parameters()) or "-",
             "description": entry.builder(**entry.kwargs).get("description", "")}
            for name, entry in zoo.REGISTRY.items()]
    table = pd.DataFrame(rows)
    if not args.verbose:
        table = table.drop(columns="description")
    print(left_aligned(table, list(table.columns)).to_string(index=False))
    return 0


def cmd_zoo_show(args) -> int:
    spec = zoo.build(args.name)
    net = evaluate(spec, input_size=args.input_size).iloc[0]
    print(summary_line(net, args.input_size))
    if args.per_layer:
        table, df = show_table(spec, args.input_size)
        print(table.to_string(index=False))
        return _report_errors(df)
    return _report_errors(net.to_frame().T)


def cmd_zoo_export(args) -> int:
    spec = zoo.build(args.name)
    text = json.dumps(spec, indent=1) + "\n"
    if args.output in (None, "-"):
        sys.stdout.write(text)
        return 0
    check_writable(args.output)
    Path(args.output).write_text(text, encoding="utf-8")
    if not args.quiet:
        print(f"wrote {spec['name']} ({len(spec['layers'])} layers) to {args.output}",
              file=sys.stderr)
    return 0


def _id_range(text: str) -> tuple[int, int]:
    start, sep, stop = text.partition(":")
    if not sep or not all(p.strip().isdigit() for p in (start, stop)):
        raise argparse.ArgumentTypeError(f"must be START:STOP, ids from 0 (e.g. 0:1000), "
                                         f"got {text!r}")
    return int(start), int(stop)


def cmd_search(args) -> int:
    if args.output:
        target = Path(args.output)
        if target.exists() and not target.is_dir():
            raise SpecError(f"{args.output}: cannot write the output: not a folder")
        check_writable(str(target / "_manifest.json") if target.is_dir() else str(target))
    result = search(args.space, output=args.output, where=args.where, sample=args.sample,
                    seed=args.seed, input_size=args.input_size, chunk=args.chunk,
                    top=args.top, by=args.by, ascending=args.ascending, ids=args.ids,
                    partition_by=args.partition_by or (), progress=_progress(args),
                    process=process_of(args))
    if args.output is None:
        with pd.option_context("display.max_rows", 50, "display.width", 200):
            print(result.to_string(index=False) if len(result) else "(no rows)")
    elif not args.quiet:
        print(summary(result), file=sys.stderr)
    return 0


def cmd_spaces(args) -> int:
    rows = [{"space": name, "candidates": f"{candidates(name):,}",
             "description": entry.description} for name, entry in BUILTIN.items()]
    table = pd.DataFrame(rows)
    print(left_aligned(table, ["space", "description"]).to_string(index=False))
    return 0


def _search_parser(sub) -> None:
    se = sub.add_parser("search", help="walk or sample a search space or grid, filter, "
                                       "write a Parquet dataset")
    se.add_argument("space", help="a built-in space (see 'rfsearch spaces') or a grid file")
    se.add_argument("-o", "--output", help="output folder (Parquet parts + manifest; "
                                           "resumable); default: print the rows")
    se.add_argument("--where", help="filter, e.g. 'rf_h >= 200 and rf_h <= 400 and aligned'")
    se.add_argument("--sample", type=_positive, help="draw N candidate ids instead of all")
    se.add_argument("--seed", type=_non_negative, default=0, help="sampling seed (default 0)")
    se.add_argument("--input-size", type=_input_sizes,
                    help="N, HxW (or DxHxW for a grid of 3-D blocks; default: the space's)")
    se.add_argument("--chunk", type=_positive,
                    help=f"candidates per device call (default {DEFAULT_CHUNK:,} on CPUs, "
                         f"{ACCELERATOR_CHUNK:,} on accelerators)")
    se.add_argument("--top", type=_positive, help="keep the K best rows by --by")
    se.add_argument("--by", help="column ranking --top (largest first)")
    se.add_argument("--ascending", action="store_true", help="--top keeps the smallest")
    se.add_argument("--ids", type=_id_range, help="only candidate ids START:STOP")
    se.add_argument("--partition-by", nargs="+", metavar="COL",
                    help="hive-partition the output folder by these choice columns")
    cluster_options(se, _positive, _non_negative)
    _progress_options(se)
    se.set_defaults(func=cmd_search, misuse=_search_misuse, parser=se)
    sp = sub.add_parser("spaces", help="list the built-in search spaces")
    sp.set_defaults(func=cmd_spaces)


CLI_NAMES = {"top": "--top", "by": "--by", "ascending": "--ascending",
             "partition_by": "--partition-by", "output": "-o OUT_DIR"}


def _search_misuse(args) -> str | None:
    """Options of ``search`` that do not go together (a usage error, exit 2), or None."""
    return option_conflict(args.top, args.by, args.ascending, args.partition_by, args.output,
                           CLI_NAMES)


def _pixels(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"must be WIDTHxHEIGHT in pixels, got {text!r}")
    return int(parts[0]), int(parts[1])


def _feature(text: str) -> tuple[int, int]:
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"a feature is Y,X (output coordinates), got {text!r}")
    return int(parts[0]), int(parts[1])


def cmd_plot(args) -> int:
    from . import plot

    check_writable(args.output)
    size = {"size": args.size} if args.size else {}
    if args.plot == "growth":  # the networks that cannot be drawn are reported, as by eval
        rows = plot.growth_rows(args.specs, args.input_size)
        print(f"wrote {plot.growth(rows, args.output, input_size=args.input_size, **size)}",
              file=sys.stderr)
        return _report_errors(rows)
    if args.plot == "boxes":
        path = plot.boxes(args.spec, args.output, image=args.image, features=args.features,
                          input_size=args.input_size, erf=args.erf, **size)
    else:
        path = plot.results(args.folder, args.output, x=args.x, y=args.y, hue=args.hue, **size)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _plot_parser(sub) -> None:
    pp = sub.add_parser("plot", help="pictures: growth, boxes, results (needs rfsearch[plot])")
    psub = pp.add_subparsers(dest="plot", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-o", "--output", required=True, help="output .png or .svg")
    common.add_argument("--size", type=_pixels, help="WIDTHxHEIGHT in pixels")
    gr = psub.add_parser("growth", parents=[common], help="RF per layer of networks")
    gr.add_argument("specs", nargs="+", help="spec files or zoo:NAME")
    gr.add_argument("--input-size", type=_input_sizes, help="draw it and mark border layers")
    bx = psub.add_parser("boxes", parents=[common], help="RFs of output features on an image")
    bx.add_argument("spec", help="a spec file or zoo:NAME")
    bx.add_argument("--image", help="PNG/JPEG (default: a synthetic image)")
    bx.add_argument("--features", type=_feature, nargs="+", help="output features Y,X")
    bx.add_argument("--input-size", type=_input_size,
                    help="without --image (default: an imported model's own size, else 224)")
    bx.add_argument("--erf", action="store_true", help="overlay a Gaussian effective-RF proxy")
    rs = psub.add_parser("results", parents=[common], help="columns of a search result")
    rs.add_argument("folder", help="a search output folder (or Parquet file)")
    rs.add_argument("-x", required=True, help="column on the x axis")
    rs.add_argument("-y", help="column on the y axis (default: a histogram of x)")
    rs.add_argument("--hue", help="colour points by this column (small results)")
    for p in (gr, bx, rs):
        p.set_defaults(func=cmd_plot)
    _name_choices(psub)


def _zoo_parser(sub) -> None:
    zp = sub.add_parser("zoo", help="well-known CNNs: list, show, export")
    zsub = zp.add_subparsers(dest="zoo_command", required=True)
    ls = zsub.add_parser("list", help="the registered networks and their arguments")
    ls.add_argument("-v", "--verbose", action="store_true", help="add a description column")
    ls.set_defaults(func=cmd_zoo_list)
    sh = zsub.add_parser("show", help="geometry of one zoo network")
    sh.add_argument("name", help="NAME or NAME(key=value,...), e.g. 'resnet50(stride_in=last)'")
    sh.add_argument("--input-size", type=_input_sizes, help="N, HxW or DxHxW")
    sh.add_argument("--per-layer", action="store_true", help="the per-layer table")
    sh.set_defaults(func=cmd_zoo_show)
    ex = zsub.add_parser("export", help="write the network's spec (JSON) to edit it")
    ex.add_argument("name", help="NAME or NAME(key=value,...)")
    ex.add_argument("-o", "--output", help="output .json file (default: standard output)")
    ex.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    ex.set_defaults(func=cmd_zoo_export)
    _name_choices(zsub)


def _name_choices(subparsers) -> None:
    """Usage errors name a group of subcommands by its choices ('required:
    {list,show,export}'), not by its internal destination ('zoo_command')."""
    subparsers.metavar = "{" + ",".join(subparsers.choices) + "}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rfsearch",
        description="Exact receptive fields of CNNs, for one network or millions.")
    parser.add_argument("--version", action="version", version=f"rfsearch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("eval", help="evaluate spec files into a table (Parquet with -o)")
    ev.add_argument("specs", nargs="+",
                    help="spec files (.json, .jsonl, .yaml, .parquet), model files (.onnx, "
                         ".keras, .h5, .pt2) or zoo:NAME")
    ev.add_argument("-o", "--output", help="write a Parquet file instead of printing")
    ev.add_argument("--input-size", type=_input_sizes,
                    help="N, HxW or DxHxW, e.g. 224, 224x320 or 16x112x112 (N: every axis)")
    ev.add_argument("--per-layer", action="store_true", help="one row per (network, layer)")
    ev.add_argument("--analysis", action="store_true",
                    help="add border / unproductive / critical layers, feasible input range, "
                         "RF at strides 8/16/32 and rf_ratio")
    ev.add_argument("--exempt-1x1", action="store_true",
                    help="with --analysis: 1x1 layers are never unproductive by the rf_min rule")
    ev.add_argument("--chunk-size", type=_positive, default=None,
                    help=f"candidates per kernel call (default: {NATIVE_CHAIN_CHUNK:,} for "
                         f"chains on the compiled CPU program, {UNROLLED_CHUNK:,} for other "
                         f"plain chains, {DEFAULT_CHUNK_ROWS:,} for other "
                         f"chains, {NATIVE_DAG_CHUNK:,} for DAGs on the compiled CPU kernel, "
                         f"{DAG_CHUNK:,} for other DAGs, which it also caps, on CPUs; more "
                         f"on accelerators; chains round it down to a multiple of {TILE})")
    _progress_options(ev)
    ev.set_defaults(func=cmd_eval)

    sh = sub.add_parser("show", help="per-layer table of one network")
    sh.add_argument("spec", help="a spec file holding one network, a model file, or zoo:NAME")
    sh.add_argument("--input-size", type=_input_sizes, help="N, HxW or DxHxW")
    sh.set_defaults(func=cmd_show)
    _zoo_parser(sub)
    import_parser(sub, _input_sizes, check_writable)
    _search_parser(sub)
    _plot_parser(sub)
    _name_choices(sub)
    return parser


def _ids_joined(argv: list[str]) -> list[str]:
    """``--ids -1:3`` as ``--ids=-1:3``: argparse takes a value that starts with '-' for an
    option, and would report the range missing instead of saying what is wrong with it."""
    out = list(argv)
    for i in range(len(out) - 1):
        if out[i] == "--ids" and out[i + 1].startswith("-") and ":" in out[i + 1]:
            out[i:i + 2] = [f"--ids={out[i + 1]}"]
            break
    return out


def main(argv=None) -> int:
    argv = _ids_joined(sys.argv[1:] if argv is None else list(argv))
    args = build_parser().parse_args(argv)
    misuse = getattr(args, "misuse", None)
    if misuse is not None and misuse(args) is not None:
        args.parser.error(misuse(args))  # exits 2, as argparse's own usage errors
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
