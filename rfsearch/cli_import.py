"""``rfsearch import``: a model file into a spec (JSON), or the ops an importer maps."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .importers import FRAMEWORKS, supported_ops
from .importers.builder import GATES, POLICIES
from .importers.files import import_file


def cmd_import(args) -> int:
    if args.list_ops:
        print("\n".join(supported_ops(args.list_ops)))
        return 0
    if not args.model:  # a usage error, as a missing argument is (exit 2)
        args.usage.error("give a model file (.onnx, .keras, .h5, .pt2), or --list-ops "
                         f"{{{','.join(FRAMEWORKS)}}}")
    spec = import_file(args.model, input_size=args.input_size, outputs=args.outputs,
                       on_unsupported=args.on_unsupported, gates=args.gates)
    text = json.dumps(spec, indent=1) + "\n"
    if args.output in (None, "-"):
        sys.stdout.write(text)
        return 0
    args.writable(args.output)
    Path(args.output).write_text(text, encoding="utf-8")
    if not args.quiet:
        print(f"wrote {spec['name']} ({len(spec['layers'])} layers, traced at "
              f"{spec['source']['input_size']}) to {args.output}", file=sys.stderr)
    return 0


def import_parser(sub, input_sizes, writable) -> None:
    """The ``import`` subcommand of ``rfsearch`` (``input_sizes``: the CLI's size parser;
    ``writable``: its check of an output path)."""
    im = sub.add_parser("import", help="a model file (.onnx, .keras, .h5, .pt2) into a spec")
    im.add_argument("model", nargs="?", help="the model file")
    im.add_argument("-o", "--output", help="write the spec (JSON) here instead of stdout")
    im.add_argument("--input-size", type=input_sizes,
                    help="N, HxW or DxHxW: the size to trace at (needed for dynamic sizes)")
    im.add_argument("--outputs", nargs="+", help="cut the model at these layers / modules")
    im.add_argument("--on-unsupported", choices=POLICIES, default="error",
                    help="error (default), or read unmapped ops as identity (recorded)")
    im.add_argument("--gates", choices=GATES, default="local",
                    help="channel gates scale each unit (local) or read the whole map")
    im.add_argument("--list-ops", choices=list(FRAMEWORKS), metavar="FRAMEWORK",
                    help=f"print the ops an importer maps ({', '.join(FRAMEWORKS)})")
    im.add_argument("-q", "--quiet", action="store_true", help="no message on stderr")
    im.set_defaults(func=cmd_import, writable=writable, usage=im)
