"""Keras models into rfsearch specs, from their configuration alone (no TensorFlow, no
Keras needed for files): a ``.keras`` archive's ``config.json``, a Keras 2 ``.h5`` file's
``model_config`` (read with h5py), or a live ``keras.Model``'s ``get_config()``.

Functional models are walked along their layers' inbound nodes (a shared layer called
twice gives ``name`` and ``name:2``), Sequential models in order. A model called as a layer
(a ``keras.applications`` backbone inside a transfer model) is inlined: its layers are
named by Keras's paths, ``backbone/conv1``, and ``backbone:2/conv1`` for a second call.
Layers are named after the Keras layer names; sizes are rfsearch's own arithmetic from the
input layer's shape, cross-checked against the tensor shapes Keras 3 records in the config.
"""

from __future__ import annotations

import json
import os
import zipfile

from ..errors import SpecError
from .builder import (
    INPUT,
    Offender,
    SpecBuilder,
    Unsupported,
    Value,
    check_policy,
    chosen,
    input_sizes,
)
from .keras_ops import ATTENTION, RULES, Layer

FRAMEWORK = "keras"
MODELS = ("Functional", "Model", "Sequential")


def from_keras(path_or_model, *, input_size=None, outputs=None, name: str | None = None,
               on_unsupported: str = "error", gates: str = "local") -> dict:
    """The rfsearch spec of a Keras model: a ``.keras`` or ``.h5`` path, or a live
    ``keras.Model`` (functional or sequential). ``input_size`` fills a dynamic spatial
    size; ``outputs``: layer names to cut the model at."""
    check_policy(on_unsupported, gates)
    config, label = _config(path_or_model)
    if not isinstance(config, dict):
        raise SpecError(f"from_keras: {label or 'the model'}'s config is not a model config")
    kind = config.get("class_name")
    body = config.get("config", {})
    if kind not in MODELS or not isinstance(body.get("layers"), list):
        raise SpecError(f"from_keras: {label or 'the model'} is a {kind or 'model'} without a "
                        "layer graph in its config (a subclassed model?); only functional and "
                        "sequential models can be read")
    layers = _graph(kind, body)
    shape, data_name = _input(layers, body, input_size, label)
    channels_last = _channels_last(layers)
    dims = len(shape) - 2
    axes = tuple(range(1, 1 + dims)) if channels_last else tuple(range(2, 2 + dims))
    builder = SpecBuilder(FRAMEWORK, dims, gates=gates)
    walker = Walker(builder)
    walker.values[(data_name, 0, 0)] = Value(INPUT, axes, tuple(shape[a] for a in axes),
                                             len(shape))
    walker.run(layers)
    wanted = walker.outputs(body, layers, outputs)
    source = {"framework": FRAMEWORK, "tracer": f"keras config ({kind})",
              "input_shape": list(shape),
              "input_size": "x".join(str(shape[a]) for a in axes)}
    return builder.spec(name or body.get("name") or "keras", wanted, on_unsupported, source)


def _config(path_or_model) -> tuple[dict, str]:
    """The model's config dict ({class_name, config}) and a label for messages."""
    if hasattr(path_or_model, "get_config") and hasattr(path_or_model, "layers"):
        return {"class_name": _class(path_or_model),
                "config": path_or_model.get_config()}, ""
    path = os.fspath(path_or_model)
    if not os.path.isfile(path):
        raise SpecError(f"from_keras: no such file: {path}")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return json.loads(archive.read("config.json")), path
        return _h5_config(path), path
    except SpecError:
        raise
    except Exception as err:  # a corrupt or truncated archive, or a foreign file
        raise SpecError(f"from_keras: cannot read {path} as a Keras model "
                        f"({type(err).__name__}: {str(err).strip()[:200]})") from None


def _class(model) -> str:
    name = type(model).__name__
    return name if name in MODELS else ("Functional" if hasattr(model, "_nodes_by_depth")
                                        or hasattr(model, "_operation_node") else name)


def _h5_config(path: str) -> dict:
    try:
        import h5py
    except ImportError as err:
        raise SpecError("from_keras: reading .h5 files needs h5py: pip install "
                        "'rfsearch[keras]'") from err
    with h5py.File(path, "r") as f:
        raw = f.attrs.get("model_config")
    if raw is None:
        raise SpecError(f"from_keras: {path} has no model_config (weights only?)")
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def _graph(kind: str, body: dict) -> list[dict]:
    """A model's layers as a functional graph: a Sequential model's as a chain."""
    return _chain(body["layers"]) if kind == "Sequential" else body["layers"]


def _chain(layers: list[dict]) -> list[dict]:
    """A Sequential model's layers as a functional graph: each reads the one before."""
    out, previous, first = [], None, 0
    for i, layer in enumerate(layers):
        layer = dict(layer)
        layer.setdefault("name", layer.get("config", {}).get("name", f"layer_{i}"))
        if previous is None and layer.get("class_name") != "InputLayer":
            config = layer.get("config", {})
            shape = config.get("batch_shape") or config.get("batch_input_shape") or \
                (layer.get("build_config") or {}).get("input_shape")
            out.append({"class_name": "InputLayer", "name": "input",
                        "config": {"batch_shape": shape}, "inbound_nodes": []})
            previous = "input"
        if previous is not None:
            layer["inbound_nodes"] = [[[previous, first, 0, {}]]]
        out.append(layer)
        previous, first = layer["name"], _first_call(layer)
    return out


def _input(layers, body, input_size, label: str) -> tuple[list, str]:
    inputs = [la for la in layers if la.get("class_name") == "InputLayer"]
    if not inputs:
        raise SpecError(f"from_keras: {label or 'the model'} has no input layer")
    first = inputs[0]
    config = first.get("config", {})
    shape = config.get("batch_shape") or config.get("batch_input_shape")
    if not shape or not 3 <= len(shape) <= 5:
        raise SpecError(f"from_keras: the input {first.get('name')!r} has shape {shape}; "
                        "expected a batch, 1 to 3 spatial axes and channels")
    shape = list(shape)
    channels_last = _channels_last(layers)
    spatial = list(range(1, len(shape) - 1)) if channels_last else list(range(2, len(shape)))
    if input_size is not None:
        sizes = input_sizes(input_size, len(spatial), "from_keras")
        for a, n in zip(spatial, sizes, strict=True):
            if shape[a] not in (None, n):
                raise SpecError(f"from_keras: the model's input is fixed at "
                                f"{[shape[b] for b in spatial]}; input_size {input_size!r} "
                                "differs")
            shape[a] = n
    if any(shape[a] is None for a in spatial):
        raise SpecError(f"from_keras: the input {first.get('name')!r} has a dynamic spatial "
                        f"size {shape[1:]}; give input_size (--input-size)")
    return [s if s is not None else 1 for s in shape], first.get("name") or \
        config.get("name")


def _channels_last(layers) -> bool:
    return "channels_first" not in _formats(layers)


def _formats(layers) -> list:
    """Every layer's data format, nested models' layers included."""
    found = []
    for la in layers:
        config = la.get("config", {}) if isinstance(la, dict) else {}
        found.append(config.get("data_format"))
        if la.get("class_name") in MODELS and isinstance(config.get("layers"), list):
            found += _formats(config["layers"])
    return found


class Walker:
    """Maps the layers' calls in dependency order; a nested model's calls with its layers'
    names under ``prefix`` (its path), in the same tables as the model around it."""

    def __init__(self, builder: SpecBuilder, values=None, produced=None, prefix: str = ""):
        self.builder = builder
        self.values: dict[tuple, object] = {} if values is None else values
        self.produced: dict[str, Value] = {} if produced is None else produced
        self.prefix = prefix
        self.shift: dict[str, int] = {}  # list-written node index of each first call

    def key(self, ref: tuple) -> tuple:
        """The (layer, call, tensor) key of a reference made inside this model."""
        return (self.prefix + ref[0], ref[1], ref[2])

    def run(self, layers: list[dict]) -> None:
        self.shift = {la.get("name"): _first_call(la) for la in layers}
        pending = [(la, i, node) for la in layers if la.get("class_name") != "InputLayer"
                   for i, node in enumerate(la.get("inbound_nodes") or [])]
        while pending:
            waiting = []
            for layer, call, node in pending:
                refs = _references(node, self.shift, layer.get("class_name") in ATTENTION)
                if all(self.key(r) in self.values for r in refs):
                    self._call(layer, call, refs, node)
                else:
                    waiting.append((layer, call, node))
            if len(waiting) == len(pending):
                names = sorted({la.get("name", "?") for la, _, _ in waiting})
                raise SpecError(f"from_keras: layers {names[:8]} read tensors no layer makes")
            pending = waiting

    def _call(self, layer: dict, call: int, refs: list[tuple], node) -> None:
        name = self.prefix + (layer.get("name") or layer.get("config", {}).get("name", "layer"))
        ins = [self._stand_in(r, self.values[self.key(r)]) for r in refs]
        for ref, value in zip(refs, ins, strict=True):
            _check(ref, value, name)
        if layer.get("class_name") in MODELS:
            self._inline(layer, call, name, ins)
            return
        la = Layer(layer.get("class_name", "?"), layer.get("config", {}), ins, name,
                   self.builder, tuple(r[3] for r in refs),
                   node.get("kwargs") or {} if isinstance(node, dict) else {})
        try:
            rule = RULES.get(la.kind)
            if rule is None:
                raise Unsupported("no rule maps this layer class")
            result = rule(la)
        except (TypeError, ValueError, KeyError, IndexError) as err:  # a malformed config
            raise SpecError(f"from_keras: layer {name!r} ({la.kind}): its config cannot be "
                            f"read ({type(err).__name__}: {err})") from None
        except Unsupported as why:
            values = [v for v in ins if isinstance(v, Value)]
            offender = Offender(name, self.prefix.rstrip("/"), la.kind, f"in {_sizes(values)}",
                                "", str(why))
            node = self.builder.offend(name, values, offender)
            result = Value(node, values[0].axes, values[0].sizes, values[0].rank)
        self.values[(name, call, 0)] = result
        self._produced(name, call, result)

    def _stand_in(self, ref: tuple, value):
        """An unmapped layer's output at the shape Keras recorded for it, where it did."""
        shape = ref[3] if len(ref) > 3 else None
        if not isinstance(value, Value) or value.node not in self.builder.offenders \
                or not shape or len(shape) != value.rank:
            return value
        theirs = tuple(shape[a] for a in value.axes)
        return value if None in theirs else self.builder.recorded(value, theirs)

    def _produced(self, name: str, call: int, value) -> None:
        """``outputs=`` names: a layer's first call by its name, the others ``name:N``."""
        if isinstance(value, Value):
            self.produced.setdefault(name if call == 0 else f"{name}:{call + 1}", value)

    def _inline(self, layer: dict, call: int, name: str, ins: list) -> None:
        """A model called as a layer: its inputs are this call's, its layers are walked
        under its path, and its outputs are this call's tensors."""
        body = layer.get("config", {})
        if not isinstance(body.get("layers"), list):
            raise SpecError(f"from_keras: layer {name!r} is a {layer.get('class_name')} "
                            "without a layer graph in its config; only functional and "
                            "sequential models can be read")
        layers = _graph(layer["class_name"], body)
        inner = Walker(self.builder, self.values, self.produced,
                       f"{name if call == 0 else f'{name}:{call + 1}'}/")
        names = _input_names(layers, body)
        if len(names) != len(ins):
            raise SpecError(f"from_keras: model {name!r} has {len(names)} inputs; its call "
                            f"{call + 1} passes {len(ins)}")
        for input_name, value in zip(names, ins, strict=True):
            self.values[(inner.prefix + input_name, 0, 0)] = value
        inner.run(layers)
        found = [self.values.get(inner.key(r))
                 for r in _output_refs(body, layers, inner.shift)]
        for tensor, value in enumerate(found):
            self.values[(name, call, tensor)] = value
        self._produced(name, call, found[0])

    def outputs(self, body: dict, layers: list[dict], outputs) -> list[Value]:
        if outputs is None:
            found = [self.values.get(self.key(r))
                     for r in _output_refs(body, layers, self.shift)]
            return [v for v in found if isinstance(v, Value)] or self._none()
        return chosen(self.produced, outputs, "from_keras", "layer")

    @staticmethod
    def _none():
        raise SpecError("from_keras: no model output is computed from the input")


def _first_call(layer: dict) -> int:
    """The node index that a reference written as a list (``[layer, node, tensor]``: Keras
    2's calls, and every model's ``output_layers``) gives a layer's first listed call. A
    functional model (and in Keras 2 a sequential one that starts with its input layer) has
    a node of its own, made when it was built and not listed among its calls, so such
    references count its calls from 1. Keras 3's ``__keras_tensor__`` histories count the
    listed calls from 0."""
    kind = layer.get("class_name")
    if kind in ("Functional", "Model"):
        return 1
    config = layer.get("config", {})
    inner = config.get("layers") if isinstance(config, dict) else None
    keras2 = any(isinstance(node, list) for node in layer.get("inbound_nodes") or [])
    return int(kind == "Sequential" and keras2 and bool(inner) and
               inner[0].get("class_name") == "InputLayer")


def _output_refs(body: dict, layers: list[dict], shift: dict) -> list[tuple]:
    """A model's output tensors, in order: its ``output_layers``, else its last layer's."""
    return _references(body.get("output_layers"), shift) if body.get("output_layers") \
        else [(layers[-1]["name"], 0, 0)]


def _input_names(layers: list[dict], body: dict) -> list[str]:
    """A model's input layers, in the order its calls pass tensors."""
    if body.get("input_layers"):
        return [r[0] for r in _references(body["input_layers"])]
    return [la.get("name") for la in layers if la.get("class_name") == "InputLayer"]


def _references(node, shift: dict | None = None, keys: bool = False) -> list[tuple]:
    """(layer, call, tensor, shape) of every tensor a call reads, in order: Keras 3's
    ``{"args": [...]}`` with ``__keras_tensor__`` entries, or Keras 2's nested lists, whose
    node indices are made calls by ``shift`` (:func:`_first_call` per layer name).
    ``keys``: an attention layer's ``key=`` and ``value=`` keyword arguments too."""
    shift = shift or {}
    found: list[tuple] = []

    def visit(item):
        if isinstance(item, dict):
            if item.get("class_name") == "__keras_tensor__":
                config = item.get("config", {})
                layer, call, tensor = config["keras_history"]
                found.append((layer, call, tensor, config.get("shape")))
                return
            for key in sorted(item):  # keras.tree.flatten's order: dicts by sorted key
                visit(item[key])
        elif isinstance(item, (list, tuple)):
            if len(item) >= 3 and isinstance(item[0], str) and isinstance(item[1], int):
                found.append((item[0], item[1] - shift.get(item[0], 0), item[2], None))
                return
            for value in item:
                visit(value)
    visit(node.get("args", node) if isinstance(node, dict) else node)
    if keys and isinstance(node, dict):
        visit({k: v for k, v in (node.get("kwargs") or {}).items() if k in ("key", "value")})
    return found


def _check(ref: tuple, value, layer: str) -> None:
    """rfsearch's sizes against the tensor shape Keras recorded, where it did."""
    shape = ref[3] if len(ref) > 3 else None
    if not isinstance(value, Value) or not shape or len(shape) != value.rank:
        return
    theirs = tuple(shape[a] for a in value.axes)
    if None not in theirs and theirs != value.sizes:
        raise SpecError(f"from_keras: layer {layer!r} reads {ref[0]!r}: rfsearch computes a "
                        f"{'x'.join(map(str, value.sizes))} map, the Keras config records "
                        f"{'x'.join(map(str, theirs))}")


def _sizes(values: list[Value]) -> str:
    return ", ".join("x".join(map(str, v.sizes)) or "features" for v in values)


def supported_ops() -> list[str]:
    """The Keras layer classes :func:`from_keras` maps."""
    return sorted(RULES)
