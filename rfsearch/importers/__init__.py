"""Real models into rfsearch specs: PyTorch modules (:func:`from_torch`), JAX models,
Flax, Equinox and Haiku included (:func:`from_jax`), ONNX files (:func:`from_onnx`) and
Keras models (:func:`from_keras`).

Each importer traces the model at an example input and maps every op to the spec
language, naming layers after the model's own module paths. The result is an ordinary
spec dict: evaluate it, write it as JSON, edit it.
"""

from __future__ import annotations

from ..errors import SpecError
from .jax_import import from_jax
from .jax_import import supported_ops as _jax_ops
from .keras_import import from_keras
from .keras_import import supported_ops as _keras_ops
from .onnx_import import from_onnx
from .onnx_import import supported_ops as _onnx_ops
from .torch_import import from_torch
from .torch_import import supported_ops as _torch_ops

FRAMEWORKS = {"torch": _torch_ops, "jax": _jax_ops, "onnx": _onnx_ops,
              "keras": _keras_ops}


def supported_ops(framework: str) -> list[str]:
    """The ops an importer maps, by the framework's own op names."""
    if framework not in FRAMEWORKS:
        raise SpecError(f"supported_ops: framework must be one of "
                        f"{', '.join(map(repr, FRAMEWORKS))}, got {framework!r}")
    return FRAMEWORKS[framework]()


__all__ = ["from_jax", "from_keras", "from_onnx", "from_torch", "supported_ops"]
