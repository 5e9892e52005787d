"""ONNX models into rfsearch specs: read the graph, then map every node (:mod:`.onnx_ops`).

Nodes are walked in the graph's (topological) order; layers are named after the nodes.
Sizes are rfsearch's own arithmetic, from the input size on; where ONNX shape inference
knows a tensor's size it is a cross-check, and a disagreement is an error naming the node.
Nodes that compute on constants only (shape arithmetic, initializers) are folded with
ONNX's reference evaluator.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np

from ..errors import SpecError
from . import onnx_layout, onnx_ops, onnx_resample
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
from .onnx_ops import Node

RULES = {**onnx_ops.RULES, **onnx_layout.RULES, **onnx_resample.RULES}

FRAMEWORK = "onnx"
EXPORTER_NAMES = ("main_graph", "torch_jit", "torch-jit-export", "tf2onnx")  # not the model's


def _onnx():
    try:
        import onnx
    except ImportError as err:
        raise SpecError("from_onnx needs the onnx package: pip install 'rfsearch[onnx]'") \
            from err
    return onnx


def from_onnx(path_or_model, *, input_size=None, outputs=None, name: str | None = None,
              on_unsupported: str = "error", gates: str = "local") -> dict:
    """The rfsearch spec of an ONNX model (a path or a ``ModelProto``), NCHW layout.

    ``input_size``: the spatial size to trace at (needed when the model's is dynamic);
    ``outputs``: node or tensor names to cut the graph at; ``on_unsupported`` and
    ``gates`` as in :func:`~rfsearch.from_torch`."""
    onnx = _onnx()
    check_policy(on_unsupported, gates)
    model, label = _load(onnx, path_or_model)
    graph = model.graph
    data, shape = _input(graph, input_size, label)
    builder = SpecBuilder(FRAMEWORK, len(shape) - 2, gates=gates)
    walker = Walker(builder, Inference(onnx, model, data.name, shape), *_constants(graph))
    walker.opset = _opset(model)
    axes = tuple(range(2, len(shape)))
    walker.values[data.name] = Value(INPUT, axes, tuple(shape[a] for a in axes), len(shape))
    walker.shapes[data.name] = tuple(shape)
    walker.run(graph)
    wanted = walker.outputs(graph, outputs)
    source = {"framework": FRAMEWORK, "tracer": f"onnx graph (opset {_opset(model)})",
              "input_shape": list(shape),
              "input_size": "x".join(str(s) for s in shape[2:])}
    stem = os.path.basename(label).rsplit(".", 1)[0] if label else ""
    spec_name = name or (graph.name if graph.name not in ("", *EXPORTER_NAMES) else "") \
        or stem or "onnx"
    return builder.spec(spec_name, wanted, on_unsupported, source)


def _load(onnx, path_or_model):
    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model, ""
    path = os.fspath(path_or_model)
    if not os.path.isfile(path):
        raise SpecError(f"from_onnx: no such file: {path}")
    try:  # weights stay on disk: only their shapes count
        model = onnx.load(path, load_external_data=False)
    except Exception as err:  # a corrupt or truncated protobuf, or external data missing
        raise SpecError(f"from_onnx: cannot read {path} as an ONNX model "
                        f"({type(err).__name__}: {' '.join(str(err).split())[:200]})") from None
    if not model.graph.node:
        raise SpecError(f"from_onnx: {path} holds no ONNX graph (empty or not a model)")
    return model, path


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _input(graph, input_size, label: str):
    """The data input and its shape [N, C, spatial...], the spatial sizes from the model
    or from ``input_size`` where the model's are dynamic."""
    initialized = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initialized]
    if not inputs:
        raise SpecError(f"from_onnx: the graph {label or graph.name!r} has no data input")
    data = inputs[0]
    dims = [d.dim_value if d.HasField("dim_value") else None
            for d in data.type.tensor_type.shape.dim]
    if not 3 <= len(dims) <= 5:
        raise SpecError(f"from_onnx: the input {data.name!r} has shape {dims}; expected "
                        "[N, C, L], [N, C, H, W] or [N, C, D, H, W]")
    spatial = dims[2:]
    if input_size is not None:
        sizes = input_sizes(input_size, len(spatial), "from_onnx")
        fixed = [(s, n) for s, n in zip(spatial, sizes, strict=True) if s and s != n]
        if fixed:
            raise SpecError(f"from_onnx: the model's input is fixed at "
                            f"{'x'.join(map(str, spatial))}; input_size {input_size!r} differs")
        spatial = sizes
    if any(not s for s in spatial):
        raise SpecError(f"from_onnx: the input {data.name!r} has a dynamic spatial size "
                        f"{[s or '?' for s in dims[2:]]}; give input_size "
                        "(--input-size)")
    return data, [dims[0] or 1, dims[1] or 1, *spatial]


class Inference:
    """ONNX shape inference at the traced input (shapes None where unknown); :meth:`pin`
    runs it again with a tensor's shape fixed, where rfsearch knowingly differs."""

    def __init__(self, onnx, model, data: str, shape):
        self.onnx, self.model = onnx, _light(onnx, model)
        for value in self.model.graph.input:
            if value.name == data:
                _set_dims(value, shape)
        self.infos: dict = {}  # tensor -> its inferred ValueInfoProto
        self._infer()

    def get(self, name: str) -> tuple | None:
        info = self.infos.get(name)
        if info is None:
            return None
        return tuple(d.dim_value if d.HasField("dim_value") else None
                     for d in info.type.tensor_type.shape.dim)

    def pin(self, name: str, shape) -> None:
        """Infer again with ``name``'s shape declared (ONNX keeps a declared shape)."""
        graph = self.model.graph
        declared = [v for v in [*graph.value_info, *graph.output] if v.name == name]
        if not declared and name in self.infos:
            graph.value_info.append(self.infos[name])
            declared = [graph.value_info[-1]]
        for value in declared:
            _set_dims(value, shape)
        self._infer()

    def _infer(self) -> None:
        try:
            inferred = self.onnx.shape_inference.infer_shapes(self.model, data_prop=True)
        except Exception:  # inference is a cross-check only
            self.infos = {}
            return
        self.infos = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.output]}


def _set_dims(value, shape) -> None:
    dims = value.type.tensor_type.shape.dim
    if len(dims) != len(shape):
        value.type.tensor_type.shape.Clear()
        dims = value.type.tensor_type.shape.dim
        for _ in shape:
            dims.add()
    for dim, size in zip(dims, shape, strict=True):
        dim.Clear()
        dim.dim_value = size


SMALL = 4096  # elements: a constant read as a number (shapes, scales); larger ones are weights


def _small(tensor) -> bool:
    from onnx import TensorProto

    return int(np.prod(tensor.dims)) <= SMALL and \
        tensor.data_location != TensorProto.EXTERNAL


def _light(onnx, model):
    """The model for shape inference: weights declared as inputs of their shape, not
    copied (inference serialises the model it is given)."""
    light = onnx.ModelProto()
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    light.functions.extend(model.functions)
    graph, source = light.graph, model.graph
    graph.name = source.name
    graph.node.extend(source.node)
    graph.input.extend(source.input)
    graph.output.extend(source.output)
    graph.value_info.extend(source.value_info)
    declared = {v.name for v in source.input}
    for tensor in source.initializer:
        if _small(tensor):
            graph.initializer.append(tensor)
        elif tensor.name not in declared:
            graph.input.append(onnx.helper.make_tensor_value_info(
                tensor.name, tensor.data_type, list(tensor.dims)))
    return light


def _constants(graph) -> tuple[dict[str, np.ndarray], dict[str, tuple]]:
    """Small initializers as numbers; every initializer's shape."""
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer if _small(t)}
    return values, {t.name: tuple(t.dims) for t in graph.initializer}


class Walker:
    """Maps the graph's nodes in order."""

    def __init__(self, builder: SpecBuilder, inference: Inference, constants: dict,
                 shapes: dict):
        self.builder, self.inference = builder, inference
        self.values: dict[str, object] = dict(constants)  # tensor -> Value or np.ndarray
        self.shapes: dict[str, tuple] = dict(shapes)
        self.produced: dict[str, Value] = {}
        self.opset = 18

    def run(self, graph) -> None:
        readers = _readers(graph)
        for index, node in enumerate(graph.node):
            ins = [self.values.get(t) if t else None for t in node.input]
            if node.op_type in ("Shape", "Size") and isinstance(ins[0], Value):
                self._shape(node)
                continue
            if not any(isinstance(v, Value) for v in ins):
                self._fold(node, ins)
                continue
            base = node.name or f"{node.op_type}_{index}"
            n = Node(node, ins, [self.shapes.get(t) for t in node.input], base,
                     self.builder, self.inference.get(node.output[0]), opset=self.opset,
                     readers=readers.get(node.output[0], ()))
            try:
                rule = RULES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
                if rule is None:
                    raise Unsupported("no rule maps this op")
                result = rule(n)
                parts = result if isinstance(result, list) else [result]  # (Split: several)
                result = parts[0]
                self._check(n, result)
            except Unsupported as why:  # its size is unknown: refused, not cross-checked
                result = self._offend(n, str(why))
                parts = [result]
            for k, t in enumerate(node.output):
                part = parts[k] if k < len(parts) else None
                self.values[t] = part
                self.shapes[t] = replace(n, inferred=self.inference.get(t)).shape_of(part)
            self.produced[node.output[0]] = result
            if node.name:
                self.produced[node.name] = result

    def _shape(self, node) -> None:
        """Shape / Size of a map: a constant, from rfsearch's sizes."""
        shape = self.shapes.get(node.input[0])
        value = None
        if shape is not None and None not in shape:
            value = np.asarray(shape, dtype=np.int64)
            if node.op_type == "Size":
                value = np.asarray(int(np.prod(shape)), dtype=np.int64)
            else:
                attrs = {a.name: a.i for a in node.attribute}
                value = value[attrs.get("start", 0):attrs.get("end", len(shape))]
        self.values[node.output[0]] = value
        self.shapes[node.output[0]] = None if value is None else value.shape

    def _fold(self, node, ins) -> None:
        """A node on constants only: evaluated (ONNX's reference evaluator)."""
        if any(v is None for v, t in zip(ins, node.input, strict=True) if t):
            outs = [None] * len(node.output)
        else:
            try:
                from onnx.reference import ReferenceEvaluator

                feeds = {t: v for t, v in zip(node.input, ins, strict=True) if t}
                outs = ReferenceEvaluator(node).run(None, feeds)
            except Exception:  # unknown; an op that needs it will say so
                outs = [None] * len(node.output)
        for t, v in zip(node.output, outs, strict=False):
            self.values[t] = None if v is None else np.asarray(v)
            self.shapes[t] = None if v is None else np.shape(v)

    def _offend(self, n: Node, why: str) -> Value:
        values = n.values
        ins = ", ".join("x".join(map(str, v.sizes)) or "features" for v in values)
        out = n.inferred if n.inferred else "?"
        offender = Offender(n.base, "", f"onnx {n.node.op_type}",
                            f"in {ins} -> out {list(out) if out != '?' else out}", "", why)
        node = self.builder.offend(n.base, values, offender, n.inferred)
        first = values[0]
        if n.inferred and len(n.inferred) != first.rank:  # it changed the rank: features
            return Value(node, (), (), len(n.inferred))  # (refused anyway: the map is lost)
        sizes = first.sizes  # ONNX's where it knows them: what follows sees the right map
        if n.inferred and None not in (theirs := tuple(n.inferred[a] for a in first.axes)):
            sizes = theirs
        return Value(node, first.axes, sizes, first.rank)

    def _check(self, n: Node, result) -> None:
        """rfsearch's sizes against ONNX shape inference's, where it knows them."""
        known, node = n.inferred, n.node
        if not isinstance(result, Value) or not known or len(known) != result.rank:
            return
        theirs = tuple(known[a] for a in result.axes)
        if None in theirs or theirs in (result.sizes, result.broadcast):  # or an expanded gate
            return
        if theirs == n.counted:  # ONNX's inference before opset 22 keeps a ceil window
            self.builder.assume(
                "ceil_mode windows that start in the right padding dropped, as ONNX Runtime "
                "and PyTorch do (ONNX shape inference before opset 22 counts them): shapes "
                "inferred again from rfsearch's sizes")
            self.inference.pin(node.output[0], n.shape_of(result))
            return
        raise SpecError(f"from_onnx: node {node.name or node.op_type!r} ({node.op_type}): "
                        f"rfsearch computes a {'x'.join(map(str, result.sizes))} map, ONNX "
                        f"shape inference {'x'.join(map(str, theirs))}")

    def outputs(self, graph, outputs) -> list[Value]:
        if outputs is None:
            found = [self.values.get(o.name) for o in graph.output]
            found = [v for v in found if isinstance(v, Value)]
            if not found:
                raise SpecError("from_onnx: no graph output is computed from the input")
            return found
        return chosen(self.produced, outputs, "from_onnx", "node or tensor")


def _readers(graph) -> dict[str, tuple[str, ...]]:
    """Per tensor, the op types that read it, looking through aliases ('output': a graph
    output)."""
    direct: dict[str, list] = {}
    for node in graph.node:
        for t in node.input:
            direct.setdefault(t, []).append(node)
    outputs = {o.name for o in graph.output}
    found = {}
    for t in direct.keys() | outputs:
        ops, todo = [], [t]
        while todo:
            name = todo.pop()
            ops += ["output"] if name in outputs else []
            for node in direct.get(name, ()):
                if node.op_type in onnx_ops.ALIASES:
                    todo.extend(node.output)
                else:
                    ops.append(node.op_type)
        found[t] = tuple(ops)
    return found


def supported_ops() -> list[str]:
    """The ONNX ops :func:`from_onnx` maps."""
    return sorted(RULES)
