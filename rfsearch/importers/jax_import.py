"""JAX models into rfsearch specs: trace to a jaxpr, then map every primitive
(:mod:`.jax_ops`).

``fn`` is any function of arrays (the model input is the last example argument), or a
Flax NNX or Equinox module called on it. Flax linen (``model.apply``) and Haiku
(``transformed.apply``) models are functions of their parameters and input. Nested
``jit``, ``custom_jvp`` and ``remat`` calls are followed into.

Layer names are module paths. For NNX and Equinox modules they are the attribute paths
(``layer1.0.conv1``): while tracing, each module's call runs in a ``jax.named_scope`` of its
path. Linen and Haiku keep their module names in the name stack themselves. Otherwise a
layer is named after the parameter it reads, or after its op. A module without submodules
is one layer; element-wise steps of one call (a bias add, a norm's arithmetic, the ops
inside ``jax.nn.gelu``) join the layer they follow.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..errors import SpecError
from .builder import INPUT, Offender, SpecBuilder, Unsupported, Value, check_policy
from .jax_layout import input_axes, leaves_of, module_tree, param_paths
from .jax_ops import RULES, Eqn, resize

FRAMEWORK = "jax"
MARK = "rfsearch:"  # our name scopes: rfsearch:<module path>#<call number>
SUBJAXPRS = ("jaxpr", "call_jaxpr", "fun_jaxpr")
# functions whose whole call is one element-wise layer: jit name -> spec op
NAMED = {"relu": "relu", "relu6": "relu6", "silu": "silu", "swish": "silu",
         "hard_silu": "hard_swish", "hard_swish": "hard_swish", "gelu": "gelu",
         "sigmoid": "sigmoid", "hard_sigmoid": "hard_sigmoid", "leaky_relu": "leaky_relu",
         "elu": "elu", "celu": "elu", "selu": "selu", "mish": "mish", "softmax": "softmax",
         "log_softmax": "softmax", "softplus": "identity", "clip": "identity",
         "hard_tanh": "identity", "standardize": "identity"}
PRIMITIVE_KINDS = {"logistic": "sigmoid", "tanh": "tanh"}
WORDS = {"conv_general_dilated": "conv", "reduce_window_max": "max_pool",
         "reduce_window_sum": "avg_pool", "reduce_window": "pool", "concatenate": "concat",
         "dot_general": "dense", "reduce_sum": "sum", "reduce_max": "amax", "pad": "pad",
         "slice": "crop", "_resize": "interpolate"}
KIND_WORDS = ("batchnorm", "layernorm", "groupnorm", "instancenorm", "dropout", "rmsnorm")


@dataclass(frozen=True)
class Param:
    """A parameter (or a value computed from parameters only): the module owning it."""

    path: str


@dataclass(frozen=True)
class Ctx:
    stack: tuple[str, ...]  # enclosing name-stack entries
    fn: tuple | None = None  # (spec op, call number, name) of an enclosing named function


def _jax():
    import jax

    return jax


def from_jax(fn, *example_args, outputs=None, name: str | None = None,
             on_unsupported: str = "error", gates: str = "local") -> dict:
    """The rfsearch spec of a JAX model, traced at ``example_args`` (the last one is the
    model input: ``[N, H, W, C]`` for Flax and Haiku, ``[C, H, W]`` for Equinox; the
    spatial axes are those its first convolution or pool reads as spatial).

    ``outputs``: module paths to cut the model at; ``on_unsupported``: ``"error"`` or
    ``"identity"``; ``gates``: ``"local"`` (a one-unit channel gate scales each unit) or
    ``"global"`` (it reads the whole map it was pooled from)."""
    jax = _jax()
    check_policy(on_unsupported, gates)
    if not example_args:
        raise SpecError("from_jax: give the example input (and any parameters before it)")
    model = _model(fn, example_args)
    example = np.shape(example_args[-1])
    if not hasattr(example_args[-1], "shape") or len(example) < 2:
        raise SpecError(f"from_jax: the last example argument must be the input array, got "
                        f"{type(example_args[-1]).__name__} of shape {list(example)}")
    with _scopes(model.modules):
        try:
            closed = jax.make_jaxpr(model.call)(*model.args)
        except Exception as err:
            raise SpecError(f"from_jax: the model cannot be traced at the example input "
                            f"({_first_line(err)})") from None
    jaxpr = closed.jaxpr
    leaf_vars = len(jaxpr.invars)
    axes = input_axes(jaxpr, leaf_vars - 1)
    if axes is None and not 3 <= len(example) <= 5:
        raise SpecError(f"from_jax: cannot tell the spatial axes of the input {list(example)}:"
                        " no convolution or pool reads it")
    builder = SpecBuilder(FRAMEWORK, len(axes or example[2:]), gates=gates)
    if axes is None:
        axes = tuple(range(1, len(example) - 1))
        builder.assume("no convolution or pool reads the input: its layout is taken as "
                       "channel-last with a batch axis (N, spatial..., C)")
    stacks = model.leaves if model.modules else leaves_of(jaxpr, model.root)
    walker = Walker(builder, stacks, model.kinds, model.root)
    ins = [Param(p) for p in param_paths(model.args[:-1], model.strip)]
    ins.append(Value(INPUT, axes, tuple(example[a] for a in axes), len(example)))
    results = walker.run(jaxpr, closed.consts, ins, Ctx(()))
    wanted = walker.outputs(results, outputs)
    source = {"framework": FRAMEWORK, "tracer": f"jax.make_jaxpr ({model.kind})",
              "input_shape": list(example),
              "input_size": "x".join(str(example[a]) for a in axes)}
    return builder.spec(name or model.name, wanted, on_unsupported, source)


# ---------------------------------------------------------------- the model

@dataclass
class Model:
    call: object  # the function traced
    args: tuple  # its example arguments (parameters first, input last)
    kind: str
    name: str
    modules: list  # [(path, module)] to scope while tracing (NNX, Equinox)
    leaves: set
    kinds: dict  # module path -> class name
    root: str = ""  # the name stack's root entry to drop (linen)
    strip: int = 0  # leading parameter-path entries to drop (linen collections)


def _model(fn, args) -> Model:
    nnx = sys.modules.get("flax.nnx")
    eqx = sys.modules.get("equinox")
    linen = sys.modules.get("flax.linen")
    if nnx is not None and isinstance(fn, nnx.Module):
        graphdef, state = nnx.split(fn)

        def call(state, *inputs):
            model = nnx.merge(graphdef, state)
            _eval_mode(model)
            with _scoped(module_tree(model)):
                return model(*inputs)
        return _modular(call, (state, *args), "flax.nnx", fn)
    if eqx is not None and isinstance(fn, eqx.Module):
        params, static = eqx.partition(fn, eqx.is_array)

        def call(params, *inputs):
            model = eqx.nn.inference_mode(eqx.combine(params, static))
            with _scoped(module_tree(model)):
                return model(*inputs)
        return _modular(call, (params, *args), "equinox", fn)
    owner = getattr(fn, "__self__", None)
    if linen is not None and isinstance(owner, linen.Module):
        return Model(fn, args, "flax.linen", type(owner).__name__, [], set(), {},
                     root=type(owner).__name__, strip=1)
    label = getattr(fn, "__name__", type(fn).__name__)
    return Model(fn, args, "function", label, [], set(), {})


def _modular(call, args, kind: str, model) -> Model:
    tree = module_tree(model)
    paths = {p for p, _ in tree}
    leaves = {p for p in paths if p and not any(q.startswith(p + ".") for q in paths)}
    kinds = {p: type(m).__name__ for p, m in tree}
    return Model(call, args, kind, type(model).__name__, tree, leaves, kinds)


def _eval_mode(model) -> None:
    """Norms on running statistics and dropout off: the geometry of inference."""
    with contextlib.suppress(Exception):  # a model without the NNX eval switch
        model.eval()


_calls = itertools.count(1)
_scoping: dict[int, str] = {}


@contextmanager
def _scopes(modules):
    """While tracing, every module class of the tree runs its call inside a named scope
    of the module's path (found by identity in :data:`_scoping`)."""
    jax = _jax()
    classes = {type(m) for _, m in modules}
    saved = {cls: cls.__dict__.get("__call__") for cls in classes}
    for cls in classes:
        original = cls.__call__

        def wrapper(self, *a, _original=original, **k):
            path = _scoping.get(id(self))
            if not path:
                return _original(self, *a, **k)
            with jax.named_scope(f"{MARK}{path}#{next(_calls)}"):
                return _original(self, *a, **k)
        cls.__call__ = wrapper
    try:
        yield
    finally:
        for cls, original in saved.items():
            if original is None:
                del cls.__call__
            else:
                cls.__call__ = original


@contextmanager
def _scoped(tree):
    """The module instances actually called (rebuilt inside the trace) by their paths."""
    added = {id(m): p for p, m in tree if id(m) not in _scoping}
    _scoping.update(added)
    try:
        yield
    finally:
        for key in added:
            _scoping.pop(key, None)


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


# ---------------------------------------------------------------- the walk

class Walker:
    """Maps a jaxpr's equations in order, following calls into their jaxprs."""

    def __init__(self, builder: SpecBuilder, leaves: set, kinds: dict, root: str):
        self.builder, self.leaves, self.kinds, self.root = builder, leaves, kinds, root
        self.units: dict = {}
        self.produced: dict[str, Value] = {}
        self.numbers = itertools.count(1)

    def run(self, jaxpr, consts, args, ctx: Ctx) -> list:
        env = dict(zip(jaxpr.invars, args, strict=True))
        env.update((v, None) for v in jaxpr.constvars)
        for eqn in jaxpr.eqns:
            outs = self.equation(eqn, [_read(env, v) for v in eqn.invars], ctx)
            env.update(zip(eqn.outvars, outs, strict=True))
        return [_read(env, v) for v in jaxpr.outvars]

    def equation(self, eqn, ins: list, ctx: Ctx) -> list:
        stack = ctx.stack + _entries(eqn.source_info.name_stack)
        values = [v for v in ins if isinstance(v, Value)]
        if not values:
            param = next((v for v in ins if isinstance(v, Param)), None)
            return [param] * len(eqn.outvars)
        sub = next((eqn.params[k] for k in SUBJAXPRS if k in eqn.params), None)
        fn_name = eqn.params.get("name")
        if sub is not None and fn_name != "_resize":
            fn = ctx.fn
            if fn_name in NAMED and fn is None:
                fn = (NAMED[fn_name], next(self.numbers), fn_name)
            inner = getattr(sub, "jaxpr", sub)
            return self.run(inner, getattr(sub, "consts", ()), ins, Ctx(stack, fn))
        prim = fn_name if sub is not None else eqn.primitive.name
        e = self._eqn(eqn, prim, ins, stack, ctx)
        try:
            if sub is not None:
                result = resize(e, _resize_taps(sub, eqn, values[0]))
            elif prim in RULES:
                result = RULES[prim](e)
            else:
                raise Unsupported("no rule maps this primitive")
        except Unsupported as why:
            result = self._offend(e, eqn, values, str(why))
        for path in _paths(stack, self.root):
            self.produced[path] = result
        return [result] + [None] * (len(eqn.outvars) - 1)

    def _eqn(self, eqn, prim: str, ins: list, stack, ctx: Ctx) -> Eqn:
        path, call = _where(stack, self.root)
        if not path:
            path = next((v.path for v in ins if isinstance(v, Param) and v.path), "")
            call = None
        leaf = path in self.leaves or (not self.leaves and path and not call)
        word = ctx.fn[2] if ctx.fn and not leaf else WORDS.get(prim, prim)
        base = path if leaf else ".".join(p for p in (path, word) if p)
        if leaf:
            unit, kind = ("leaf", path, call), _kind(self.kinds.get(path, path))
        elif ctx.fn:
            unit, kind = ("fn", ctx.fn[1]), ctx.fn[0]
        else:
            unit, kind = ("path", path, call), PRIMITIVE_KINDS.get(prim, "identity")
        shapes = [tuple(getattr(v.aval, "shape", ())) for v in eqn.invars]
        out = tuple(getattr(eqn.outvars[0].aval, "shape", ()))
        return Eqn(prim, dict(eqn.params), ins, shapes, out, base, kind, unit, self.builder,
                   self.units)

    def _offend(self, e: Eqn, eqn, values: list[Value], why: str) -> Value:
        ins = ", ".join("x".join(map(str, v.sizes)) or "features" for v in values)
        line = _line(eqn)
        path = e.base if e.unit and e.unit[0] == "leaf" else e.unit[1] if e.unit and \
            e.unit[0] == "path" else ""
        offender = Offender(e.base, path, f"jax.lax.{e.prim}", f"in {ins} -> out "
                            f"{list(e.out)}", line, why)
        node = self.builder.offend(e.base, values, offender)
        first = values[0]
        axes = first.axes if len(e.out) == first.rank else ()
        return Value(node, axes, tuple(e.out[a] for a in axes), len(e.out))

    def outputs(self, results: list, outputs) -> list[Value]:
        if outputs is None:
            found = [v for v in results if isinstance(v, Value)]
            if not found:
                raise SpecError("from_jax: the model returns nothing computed from its input")
            return found
        names = [outputs] if isinstance(outputs, str) else list(outputs)
        missing = [n for n in names if n not in self.produced]
        if missing:
            known = ", ".join(sorted(self.produced)[:12])
            raise SpecError(f"from_jax: outputs {missing} name no module that computed a "
                            f"value from the input (module paths: {known}, ...)")
        return [self.produced[n] for n in names]


def _read(env: dict, var):
    from jax.extend.core import Literal

    return None if isinstance(var, Literal) else env[var]


def _entries(name_stack) -> tuple[str, ...]:
    text = str(name_stack)
    return tuple(t for t in text.split("/") if t) if text else ()


def _where(stack, root: str) -> tuple[str, object]:
    """(module path, call number) from a name stack: our innermost scope, else the
    framework's own scope names (linen's, Haiku's)."""
    ours = [s for s in stack if s.startswith(MARK)]
    if ours:
        path, _, call = ours[-1][len(MARK):].rpartition("#")
        return path, int(call)
    return ".".join(_plain(stack, root)), None


def _plain(stack, root: str) -> list[str]:
    parts = [s for s in stack if s != "~" and "(" not in s]
    return parts[1:] if root and parts[:1] == [root] else parts


def _paths(stack, root: str) -> list[str]:
    """Every module path the value was computed inside (for ``outputs=``)."""
    ours = [s[len(MARK):].rpartition("#")[0] for s in stack if s.startswith(MARK)]
    if ours:
        return ours
    parts = _plain(stack, root)
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _kind(name: str) -> str:
    """The element-wise op a module is, by its class (or scope) name."""
    word = "".join(ch for ch in name.rsplit(".", 1)[-1].lower() if ch.isalpha())
    for kind in KIND_WORDS:
        if kind in word:
            return "layernorm" if kind == "rmsnorm" else kind
    return "identity"


def _line(eqn) -> str:
    """The model's source line that made the equation (a courtesy: empty if unknown)."""
    try:
        from jax._src import source_info_util

        frame = source_info_util.user_frame(eqn.source_info.traceback)
    except Exception:  # a private helper that may move
        return ""
    if frame is None:
        return ""
    return f"{frame.file_name.rsplit('/', 1)[-1]}:{frame.start_line} in {frame.function_name}"


def _resize_taps(sub, eqn, x: Value) -> int:
    """How many output units one input unit reaches per unit of factor, found by running
    jax.image.resize's own computation on an impulse at the map's centre."""
    from jax.extend.core import jaxpr_as_fun

    shape = tuple(eqn.invars[0].aval.shape)
    probe = np.zeros(shape, dtype=np.dtype(eqn.invars[0].aval.dtype))
    centre = [slice(None)] * len(shape)
    for a, n in zip(x.axes, x.sizes, strict=True):
        centre[a] = n // 2
    probe[tuple(centre)] = 1
    (out,) = jaxpr_as_fun(sub)(probe)
    out = np.abs(np.asarray(out))
    taps = 1
    for a, n in zip(x.axes, x.sizes, strict=True):
        other = tuple(d for d in range(out.ndim) if d != a)
        reach = int(np.count_nonzero(out.sum(axis=other)))
        factor = out.shape[a] // n
        taps = max(taps, -(-reach // factor))
    return taps


def supported_ops() -> list[str]:
    """The JAX primitives :func:`from_jax` maps (plus ``jax.image.resize``)."""
    return sorted({*RULES, "jax.image.resize"})
