"""Model files wherever a spec is accepted: ``.onnx``, ``.keras``, ``.h5`` and ``.pt2`` (a
saved ``torch.export`` program) are imported by their framework's importer, once per file
version and input size."""

from __future__ import annotations

import copy
import functools
import logging
import os
from pathlib import Path

from ..errors import SpecError

MODEL_SUFFIXES = {".onnx": "onnx", ".keras": "keras", ".h5": "keras", ".pt2": "torch"}


def is_model_file(path) -> bool:
    return isinstance(path, str | Path) and Path(path).suffix.lower() in MODEL_SUFFIXES


def import_file(path, *, input_size=None, outputs=None, on_unsupported: str = "error",
                gates: str = "local") -> dict:
    """The spec of a model file (a fresh copy: edit it freely)."""
    if not os.path.isfile(path):
        raise SpecError(f"{path}: " + ("a folder, not a model file" if os.path.isdir(path)
                                       else "no such file"))
    if not is_model_file(path):
        raise SpecError(f"{path}: not a model file (the importers read "
                        f"{', '.join(MODEL_SUFFIXES)})")
    stat = os.stat(path)
    key = _key(input_size), _key(outputs)
    spec = _imported(os.path.abspath(path), stat.st_mtime_ns, stat.st_size, *key,
                     on_unsupported, gates)
    return copy.deepcopy(spec)


def _key(value):
    if value is None or isinstance(value, str | int):
        return value
    return tuple(value)


@functools.lru_cache(maxsize=16)
def _imported(path: str, _mtime: int, _size: int, input_size, outputs, on_unsupported: str,
              gates: str) -> dict:
    framework = MODEL_SUFFIXES[Path(path).suffix.lower()]
    options = {"outputs": list(outputs) if isinstance(outputs, tuple) else outputs,
               "on_unsupported": on_unsupported, "gates": gates}
    if framework == "onnx":
        from .onnx_import import from_onnx

        return from_onnx(path, input_size=input_size, **options)
    if framework == "keras":
        from .keras_import import from_keras

        return from_keras(path, input_size=input_size, **options)
    return _torch_program(path, input_size, options)


def _torch_program(path: str, input_size, options: dict) -> dict:
    from .torch_import import _torch, from_torch

    torch = _torch()
    quiet = logging.getLogger("torch.export")  # it logs a traceback before raising
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        program = torch.export.load(path)
    except Exception as err:  # a corrupt archive, or a program of another torch version
        raise SpecError(f"{path}: cannot load a torch.export program "
                        f"({type(err).__name__}: {str(err).strip()[:200]})") from None
    finally:
        quiet.setLevel(level)
    spec = from_torch(program, input_size, **options)
    spec["name"] = Path(path).stem if spec["name"] in ("ExportedProgram", "GraphModule") \
        else spec["name"]
    return spec
