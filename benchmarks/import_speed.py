"""How long does importing a real-sized model take? Times the importers on ResNet-50 (and
ResNet-18 for scale) at 1x3x224x224, whole model, then ``evaluate`` of the imported spec.

The models are the hand-written torchvision architectures of ``tests/torch_models.py``
and their Flax NNX twins in ``tests/flax_models.py`` (torchvision's module names and
widths: 25.6 M and 11.7 M parameters, 1,000 classes), with their weights as initialised:
the importers read shapes, not values. Building the
model and its example input is not timed.

Per model and framework: the first call in a fresh Python process (``cold``: a
subprocess of this script, so that the importer's own warm-up, e.g. torch.export's, is
paid as a user pays it once per process; median of ``--processes``), then the median of
``--repeats`` calls in this process after a first one (``warm``); ``evaluate`` of the spec
at 224, first call (compilation) and median apart. The target ("a few seconds at most")
is judged on the cold ResNet-50 import.

Writes benchmarks/results/import_speed.json and prints one line per model.
Run: python benchmarks/import_speed.py [--repeats 7] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FILES = Path(tempfile.gettempdir()) / "rfsearch-import-speed"  # exported models, reused
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # torch_models: torchvision's architectures
import workloads as W  # noqa: E402

import rfsearch  # noqa: E402

SIZE = 224
# judged on the cold ResNet-50 import: "a few seconds at most" from a live model, "well
# under a second" from a file
TARGETS_S = {"PyTorch": 5.0, "Flax": 5.0, "ONNX": 0.5, "ONNX, one file": 0.5, "Keras": 0.5}
QUICK_WIDTH = 8  # --quick: the same architectures at 1/8 of torchvision's width
PACKAGES = ("torch", "flax", "onnx", "keras", "jax", "jaxlib", "numpy")  # versions recorded

Importer = Callable[[], object]  # one timed call: model to spec


def torch_case(model: str, quick: bool) -> tuple[Importer, int]:
    """``from_torch`` on a whole torchvision-named model in eval mode, and its parameter
    count; imported here so that a run without torch can time the other frameworks."""
    import torch
    from torch_models import ResNet18, ResNet50

    build = {"ResNet-50": ResNet50, "ResNet-18": ResNet18}[model]
    net = build(width=QUICK_WIDTH if quick else 64, classes=1000).eval()
    example = torch.zeros(1, 3, SIZE, SIZE)
    return (lambda: rfsearch.from_torch(net, example)), sum(p.numel() for p in net.parameters())


def flax_case(model: str, quick: bool) -> tuple[Importer, int]:
    """``from_jax`` on the Flax NNX twin of the model (``tests/flax_models.py``: the same
    module paths and geometry), with its weights initialised, and its parameter count."""
    import jax
    import numpy as np
    from flax import nnx
    from flax_models import ResNet18, ResNet50

    build = {"ResNet-50": ResNet50, "ResNet-18": ResNet18}[model]
    net = build(width=QUICK_WIDTH if quick else 64, classes=1000)
    example = np.zeros((1, SIZE, SIZE, 3), np.float32)
    count = sum(a.size for a in jax.tree.leaves(nnx.state(net, nnx.Param)))
    return (lambda: rfsearch.from_jax(net, example)), count


def onnx_case(model: str, quick: bool, single: bool = False
              ) -> tuple[Importer, Callable[[], int]]:
    """``from_onnx`` on the file ``torch.onnx.export`` writes of the PyTorch model (its
    weights in a side file), or with ``single`` on one file holding the weights too. The
    file is written once (untimed) and reused by the cold processes, which then import
    no framework: their first call pays for ``import onnx`` as a user's does."""
    path = saved(model, quick, ".onnx", export_onnx)
    if single:
        path = saved(model, quick, ".single.onnx", lambda *_: one_file(path, _[-1]))
    return (lambda: rfsearch.from_onnx(path)), lambda: parameter_count(path)


def one_file(source: Path, path: Path) -> None:
    import onnx

    onnx.save(onnx.load(str(source)), str(path), save_as_external_data=False)


def keras_case(model: str, quick: bool) -> tuple[Importer, Callable[[], int]]:
    """``from_keras`` on the ``.keras`` archive of the Keras twin (``tests/keras_models.py``),
    written once; reading it needs no Keras."""
    path = saved(model, quick, ".keras", save_keras)
    return (lambda: rfsearch.from_keras(path)), lambda: parameter_count(path)


def saved(model: str, quick: bool, suffix: str, write) -> Path:
    path = FILES / f"{model}{'-quick' if quick else ''}{suffix}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write(model, QUICK_WIDTH if quick else 64, path)
    return path


def export_onnx(model: str, width: int, path: Path) -> None:
    import torch
    from torch_models import ResNet18, ResNet50

    net = {"ResNet-50": ResNet50, "ResNet-18": ResNet18}[model](width=width, classes=1000)
    with contextlib.redirect_stdout(sys.stderr):
        torch.onnx.export(net.eval(), (torch.zeros(1, 3, SIZE, SIZE),), str(path),
                          dynamo=True)


def save_keras(model: str, width: int, path: Path) -> None:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    from keras_models import ResNet18, ResNet50

    build = {"ResNet-50": ResNet50, "ResNet-18": ResNet18}[model]
    build(width=width, classes=1000, input_shape=(SIZE, SIZE, 3)).save(path)


def parameter_count(path: Path) -> int:
    """Parameters stored in the file (the ONNX initializers, the Keras weights)."""
    if path.suffix == ".onnx":
        import onnx

        return sum(int(np.prod(t.dims)) for t in onnx.load(str(path)).graph.initializer
                   if len(t.dims) > 1 or "running" not in t.name)
    import zipfile

    import h5py

    with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as fh, \
            h5py.File(fh, "r") as f:
        sizes = []
        f.visititems(lambda _, obj: sizes.append(obj.size) if hasattr(obj, "size") and
                     hasattr(obj, "dtype") else None)
    return int(sum(sizes))


# The extension point: one row per (model, framework), label -> (model, framework, factory).
# A factory takes ``quick`` and returns (the import call, the model's parameter count),
# building the model and its input untimed (as torch_case does). Another framework is
# another factory, its rows here ("resnet50-<framework>", ...) and its package in PACKAGES;
# render_readme.py puts every ResNet-50 row in README.md and every row in
# benchmarks/README.md, by its framework.
CASES: dict[str, tuple[str, str, Callable[[bool], tuple[Importer, object]]]] = {
    "resnet50-torch": ("ResNet-50", "PyTorch", lambda quick: torch_case("ResNet-50", quick)),
    "resnet18-torch": ("ResNet-18", "PyTorch", lambda quick: torch_case("ResNet-18", quick)),
    "resnet50-flax": ("ResNet-50", "Flax", lambda quick: flax_case("ResNet-50", quick)),
    "resnet18-flax": ("ResNet-18", "Flax", lambda quick: flax_case("ResNet-18", quick)),
    "resnet50-onnx": ("ResNet-50", "ONNX", lambda quick: onnx_case("ResNet-50", quick)),
    "resnet50-onnx-1file": ("ResNet-50", "ONNX, one file",
                            lambda quick: onnx_case("ResNet-50", quick, single=True)),
    "resnet50-keras": ("ResNet-50", "Keras", lambda quick: keras_case("ResNet-50", quick)),
}


def seconds(call: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = call()
    return time.perf_counter() - start, out


def cold_seconds(label: str, quick: bool) -> float:
    """The first import of ``label`` in a fresh Python process (this script, ``--cold``)."""
    cmd = [sys.executable, __file__, "--cold", label, *(["--quick"] if quick else [])]
    run = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])["cold_s"]


def measure(label: str, repeats: int, processes: int, quick: bool) -> dict:
    """One row: cold (median over ``processes``) and warm import, the spec's size and
    geometry, ``evaluate`` at 224."""
    model, framework, factory = CASES[label]
    call, params = factory(quick)  # first: files it writes are then reused by the children
    params = params() if callable(params) else params
    cold = [cold_seconds(label, quick) for _ in range(processes)]
    first, spec = seconds(call)
    times = [seconds(call)[0] for _ in range(repeats)]
    evaluate = lambda: rfsearch.evaluate(spec, input_size=SIZE)  # noqa: E731
    eval_first, df = seconds(evaluate)
    eval_times = [seconds(evaluate)[0] for _ in range(repeats)]
    row = df.iloc[-1]
    return {"label": label, "model": model, "framework": framework, "params": params,
            "input": f"1x3x{SIZE}x{SIZE}", "layers": len(spec["layers"]),
            "output": spec["output"], "rf": int(row["rf_h"]), "stride": int(row["stride_h"]),
            "padding": int(row["padding_h"]),
            "cold_s": statistics.median(cold), "cold_times": cold,
            "first_in_process_s": first, "median_s": statistics.median(times),
            "times": times, "evaluate_first_s": eval_first,
            "evaluate_s": statistics.median(eval_times), "evaluate_times": eval_times}


def versions() -> dict:
    """Versions of rfsearch and of the packages in ``PACKAGES`` that are installed."""
    found = {name: W.package_version(name) for name in PACKAGES}
    return {"rfsearch": rfsearch.__version__} | {k: v for k, v in found.items() if v}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="warm calls")
    parser.add_argument("--processes", type=int, default=3, help="fresh processes (cold)")
    parser.add_argument("--quick", action="store_true",
                        help=f"1/{QUICK_WIDTH} of the widths, 2 repeats, smoke test")
    parser.add_argument("--only", nargs="+", choices=sorted(CASES), help="rows to time")
    parser.add_argument("--cold", choices=sorted(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.cold:  # the child of cold_seconds: one first call, printed as JSON
        call, _ = CASES[args.cold][2](args.quick)
        print(json.dumps({"cold_s": seconds(call)[0]}))
        return 0
    repeats, processes = (2, 1) if args.quick else (args.repeats, args.processes)
    out = args.out or W.RESULTS / ("import_speed_quick.json" if args.quick
                                   else "import_speed.json")
    rows = [measure(label, repeats, processes, args.quick) for label in args.only or CASES]
    for r in rows:
        r["target_s"] = TARGETS_S[r["framework"]]
    r50 = [r for r in rows if r["model"] == "ResNet-50"]
    res = {"benchmark": "import_speed", "quick": args.quick,
           "question": "seconds to import a ResNet-50-sized model into a spec",
           "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
           "device": W.device_info(), "source": W.source_info(), "versions": versions(),
           "statistic": "median", "repeats": repeats, "processes": processes,
           "input_size": SIZE,
           "targets_s": TARGETS_S,
           "target_met": bool(r50) and all(r["cold_s"] <= r["target_s"] for r in r50),
           "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    for r in rows:
        print(f"{r['model']} ({r['framework']}, {r['params'] / 1e6:.1f} M parameters, "
              f"{r['layers']} layers): import cold {r['cold_s']:.2f} s, warm "
              f"{r['median_s']:.2f} s; evaluate at {SIZE} {r['evaluate_s'] * 1e3:.1f} ms "
              f"(first {r['evaluate_first_s']:.2f} s); rf {r['rf']}, stride {r['stride']}"
              + (" [--quick]" if args.quick else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
