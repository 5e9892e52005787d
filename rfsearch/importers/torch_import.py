"""PyTorch modules into rfsearch specs: trace, then map every ATen op (:mod:`.torch_ops`).

The model is traced with ``torch.export`` at the example input (no decompositions: an
upsample stays an upsample); layer names are the modules' paths from the graph's
``nn_module_stack``. Where export fails for any reason but data-dependent control flow,
``make_fx`` (torch.fx's tracer of ATen ops) traces it instead, with names from op and
position, and the spec's ``source`` says so. Data-dependent control flow is refused: the
geometry could change with the data.
"""

from __future__ import annotations

import contextlib
import operator
import re
import warnings

from ..errors import SpecError
from . import torch_layout, torch_ops, torch_resample
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
from .torch_ops import ALIASES, SPLITS, Call

RULES = {**torch_ops.RULES, **torch_layout.RULES, **torch_resample.RULES}

FRAMEWORK = "torch"
# ATen ops that only carry shapes or asserts: no value to map
IGNORED = ("sym_size", "sym_numel", "sym_stride", "_assert_async", "_assert_scalar",
           "scalar_tensor", "empty", "zeros", "ones", "full", "arange", "lift_fresh_copy",
           "_check_is_size", "sym_constrain_range_for_size", "detach_")
# Layer names for functional ops (module path + this); other ops use their ATen name.
FRIENDLY = {"slice": "crop", "narrow": "crop", "constant_pad_nd": "pad", "cat": "cat",
            **{f"upsample_{m}{d}d": "interpolate" for m in ("nearest", "linear", "bilinear",
                                                             "trilinear", "bicubic")
               for d in (1, 2, 3)}}
DATA_DEPENDENT = ("data-dependent", "data dependent", "GuardOnDataDependentSymNode")


def _torch():
    try:
        import torch
    except ImportError as err:
        raise SpecError("from_torch needs PyTorch: pip install 'rfsearch[torch]'") from err
    return torch


def from_torch(model, example_input=None, *, outputs=None, name: str | None = None,
               on_unsupported: str = "error", gates: str = "local") -> dict:
    """The rfsearch spec of a PyTorch module, traced at ``example_input`` (a tensor
    ``[N, C, L]``, ``[N, C, H, W]`` or ``[N, C, D, H, W]``), or of a ``torch.export``
    program (``torch.export.load``), whose ``example_input`` may be omitted or be an input
    size (N, HxW, ...) for a program saved with dynamic sizes.

    ``outputs``: module paths (``"layer4"``) to cut the model at; the first is the spec's
    output. ``on_unsupported``: ``"error"`` (one message listing every op no rule maps)
    or ``"identity"`` (read them as identity, recorded in the spec's ``source``).
    ``gates``: ``"local"`` (a 1 x 1 channel gate, as in squeeze-and-excitation, scales each
    unit) or ``"global"`` (it reads the whole map it was pooled from)."""
    torch = _torch()
    check_policy(on_unsupported, gates)
    if isinstance(model, torch.export.ExportedProgram):
        model, example_input = _program(torch, model, example_input)
    if not isinstance(example_input, torch.Tensor) or example_input.dim() not in (3, 4, 5):
        shape = list(getattr(example_input, "shape", [])) or type(example_input).__name__
        raise SpecError(f"from_torch: example_input must be a tensor [N, C, spatial...] with "
                        f"1 to 3 spatial axes, got {shape}")
    graph, tracer, inputs = _trace(torch, model, example_input)
    dims = example_input.dim() - 2
    builder = SpecBuilder(FRAMEWORK, dims, gates=gates)
    values, produced = _walk(graph, inputs, builder, _leaves(model, graph))
    wanted = _outputs(graph, values, produced, outputs)
    source = {"framework": FRAMEWORK, "tracer": tracer,
              "input_shape": list(example_input.shape),
              "input_size": "x".join(str(s) for s in example_input.shape[2:])}
    return builder.spec(name or type(model).__name__, wanted, on_unsupported, source)


def _program(torch, program, input_size):
    """A saved program as itself (static sizes) or re-exported at ``input_size`` (an
    example tensor stands for its spatial size)."""
    if isinstance(input_size, torch.Tensor):
        input_size = tuple(input_size.shape[2:])
    placeholder = next(n for n in program.graph.nodes if n.op == "placeholder"
                       and n.name in program.graph_signature.user_inputs)
    shape = list(placeholder.meta["val"].shape)
    static = all(isinstance(d, int) for d in shape)
    if input_size is None:
        if not static:
            raise SpecError(f"from_torch: the saved program's input {shape} has a dynamic "
                            "size; give an input size (--input-size)")
        return program, torch.zeros(shape)
    sizes = input_sizes(input_size, len(shape) - 2, "from_torch")
    wanted = [int(shape[0]) if isinstance(shape[0], int) else 1,
              int(shape[1]) if isinstance(shape[1], int) else 1, *sizes]
    if static and wanted == shape:
        return program, torch.zeros(shape)
    return program.module(), torch.zeros(wanted)


def _trace(torch, model, example):
    """(graph, tracer description, names of the graph's user inputs)."""
    if isinstance(model, torch.export.ExportedProgram):
        return model.graph, "torch.export (saved program)", \
            set(model.graph_signature.user_inputs)
    was_training = getattr(model, "training", False)
    _mode(model, False)
    try:
        try:
            program = torch.export.export(model, (example,), strict=False)
            return program.graph, "torch.export", set(program.graph_signature.user_inputs)
        except Exception as err:
            reason = _first_line(err)
            if any(word in str(err) for word in DATA_DEPENDENT):
                raise SpecError(f"from_torch: the model has data-dependent control flow "
                                f"({reason}); its geometry could change with the input") from None
        from torch.fx.experimental.proxy_tensor import make_fx
        try:
            with torch.no_grad():
                module = make_fx(model, tracing_mode="real")(example)
        except Exception as err:
            raise SpecError(f"from_torch: the model cannot be traced: torch.export failed "
                            f"({reason}), and torch.fx ({_first_line(err)})") from None
        warnings.warn(f"rfsearch.from_torch: torch.export failed ({reason}); traced with "
                      "torch.fx's make_fx instead (layer names from op and position)",
                      RuntimeWarning, stacklevel=3)  # said once the fallback worked
        placeholders = [n.name for n in module.graph.nodes if n.op == "placeholder"]
        return module.graph, f"torch.fx make_fx (torch.export failed: {reason})", \
            set(placeholders[:1])
    finally:
        _mode(model, was_training)


def _mode(model, training: bool) -> None:
    """Train / eval mode, where the module has one (a saved program's module has not)."""
    with contextlib.suppress(NotImplementedError):
        model.train(training)


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def _leaves(model, graph) -> set[str]:
    """Paths of modules without children (a layer named after its module alone); for a
    saved program (or its module), the module paths its graph records that no other path
    extends."""
    import torch.fx

    if hasattr(model, "named_modules") and not isinstance(model, torch.fx.GraphModule):
        return {path for path, m in model.named_modules()
                if not any(True for _ in m.children())}
    paths = {p for node in graph.nodes for p in _paths(node)}
    return {p for p in paths if not any(q.startswith(p + ".") for q in paths)}


def _path(node) -> str:
    paths = _paths(node)
    return paths[-1] if paths else ""


def _op_name(target) -> str:
    name = getattr(target, "_opname", None) or getattr(target, "__name__", str(target))
    return name.split(".")[0]


def _walk(graph, inputs: set[str], builder: SpecBuilder, leaves: set[str]):
    """Every node's value (Value, tuple of values, or a constant), and per module path the
    last value computed inside it (for ``outputs=``)."""
    values: dict = {}
    produced: dict[str, Value] = {}
    for node in graph.nodes:
        if node.op == "placeholder":
            values[node] = _input(node) if node.name in inputs else node.meta.get("val")
        elif node.op == "get_attr":  # make_fx's parameters and buffers: their shapes count
            values[node] = node.meta.get("val", _attribute(graph, node.target))
        elif node.op == "call_function":
            values[node] = _call(node, values, builder, leaves)
            if isinstance(values[node], Value):
                for path in _paths(node):
                    produced[path] = values[node]
        elif node.op == "output":
            values[node] = node.args[0]
    return values, produced


def _attribute(graph, target: str):
    """A constant of the traced module (a parameter of make_fx's graph), or None."""
    value = getattr(graph, "owning_module", None)
    for part in target.split("."):
        value = getattr(value, part, None)
    return value


def _paths(node) -> list[str]:
    """The module paths a node was computed inside, outermost first."""
    stack = node.meta.get("nn_module_stack") or {}
    return [re.sub(r"^L\['self'\]\.?", "", v[0]).replace("L['self']", "")
            for v in stack.values()]


def _input(node) -> Value:
    shape = tuple(node.meta["val"].shape)
    axes = tuple(range(2, len(shape)))
    return Value(INPUT, axes, tuple(shape[a] for a in axes), len(shape))


def _resolve(arg, values):
    import torch.fx

    if isinstance(arg, torch.fx.Node):
        return values.get(arg)
    if isinstance(arg, (list, tuple)):
        return type(arg)(_resolve(a, values) for a in arg)
    return arg


def _bind(node, values) -> dict:
    """The op's arguments by its schema's names (defaults filled in), resolved."""
    return {k: _resolve(v, values) for k, v in _bound(node).items()}


def _bound(node) -> dict:
    """The op's arguments by its schema's names (defaults filled in), as the graph has
    them."""
    schema = getattr(node.target, "_schema", None)
    if schema is None:
        return {**{f"arg{i}": a for i, a in enumerate(node.args)}, **node.kwargs}
    bound = {}
    for i, spec in enumerate(schema.arguments):
        if i < len(node.args):
            bound[spec.name] = node.args[i]
        elif spec.name in node.kwargs:
            bound[spec.name] = node.kwargs[spec.name]
        elif spec.has_default_value():
            bound[spec.name] = spec.default_value
    return bound


def _arg_shapes(node) -> dict:
    """The shapes of the op's tensor arguments, by name."""
    return {k: tuple(v.meta["val"].shape) for k, v in _bound(node).items()
            if hasattr(getattr(v, "meta", {}).get("val"), "shape")}


def _call(node, values, builder: SpecBuilder, leaves: set[str]):
    if node.target is operator.getitem:
        container, index = values.get(node.args[0]), node.args[1]
        return container[index] if isinstance(container, (list, tuple)) else container
    op = _op_name(node.target)
    args = _bind(node, values)
    tensors = [v for v in _flatten(args.values()) if isinstance(v, Value)]
    if op in IGNORED or not tensors:
        return node.meta.get("val")
    path = _path(node)
    word = FRIENDLY.get(op, op.rstrip("_"))
    base = path if path in leaves else (f"{path}.{word}" if path else word)
    val = node.meta.get("val")
    first = val[0] if isinstance(val, (list, tuple)) else val
    shape = tuple(getattr(first, "shape", ()))
    rule = RULES.get(op)
    try:
        if rule is None:
            raise Unsupported("no rule maps this op")
        result = rule(Call({**args, "__op": op}, shape, base, builder, _in_shape(node),
                           _readers(node), _arg_shapes(node)))
        _check_sizes(result, shape, op)
    except Unsupported as why:
        base = base or word  # a bare leaf module: name the op, not "identity"
        offender = Offender(base, path, f"aten.{op}", _shapes(tensors, shape),
                            _line(node), str(why))
        name = builder.offend(base, tensors, offender, shape)
        first = tensors[0]  # a stand-in: the same map, or features where the rank changed
        result = Value(name, first.axes, first.sizes, first.rank) if len(shape) == first.rank \
            else Value(name, (), (), len(shape))
    if isinstance(val, (list, tuple)):  # (output, indices) and the like; a split's parts
        return (result, *((result if op in SPLITS else None) for _ in val[1:]))
    return result


def _readers(node) -> tuple[str, ...]:
    """The ops that read ``node``'s result, looking through aliases ('output': the
    graph's output)."""
    found, todo = [], list(node.users)
    while todo:
        user = todo.pop()
        op = _op_name(user.target) if user.op == "call_function" else user.op
        if op in ALIASES or user.target is operator.getitem:
            todo.extend(user.users)
        else:
            found.append(op)
    return tuple(found)


def _check_sizes(result, shape: tuple, op: str) -> None:
    """A rule's map against the traced tensor: a one-unit operand spread along the map
    (other than an ``expand`` that only a gate reads) has no box."""
    if not isinstance(result, Value) or not result.spatial or len(shape) != result.rank \
            or op in ("expand", "expand_as"):
        return
    traced = tuple(shape[a] for a in result.axes)
    if traced != result.sizes:
        raise Unsupported(f"an operand of {list(result.sizes)} units broadcast over a map "
                          f"of {list(traced)}")


def _in_shape(node) -> tuple[int, ...] | None:
    """The shape of the op's first argument, where it is a traced tensor."""
    first = node.args[0] if node.args else None
    val = getattr(first, "meta", {}).get("val")
    return tuple(val.shape) if hasattr(val, "shape") else None


def _flatten(items):
    for item in items:
        if isinstance(item, (list, tuple)):
            yield from _flatten(item)
        else:
            yield item


def _shapes(tensors: list[Value], shape) -> str:
    ins = ", ".join("x".join(map(str, v.sizes)) or "features" for v in tensors)
    return f"in {ins} -> out {list(shape)}"


def _line(node) -> str:
    """The model's source line that made the op (the last frame of its stack trace)."""
    trace = node.meta.get("stack_trace") or ""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\w+)', trace)
    if not frames:
        return ""
    file, line, func = frames[-1]
    return f"{file.rsplit('/', 1)[-1]}:{line} in {func}"


def _outputs(graph, values, produced: dict[str, Value], outputs) -> list[Value]:
    """The values to evaluate: the named modules' outputs, else the model's outputs."""
    if outputs is None:
        out = next(n for n in graph.nodes if n.op == "output")
        found = [v for v in _flatten([_resolve(out.args[0], values)]) if isinstance(v, Value)]
        if not found:
            raise SpecError("from_torch: the model returns no traced tensor")
        return found
    return chosen(produced, outputs, "from_torch", "module")


def supported_ops() -> list[str]:
    """The ATen ops :func:`from_torch` maps."""
    return sorted(RULES)
