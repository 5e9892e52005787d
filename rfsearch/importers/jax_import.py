"""JAX models into rfsearch specs: trace to a jaxpr, then map every primitive
(:mod:`.jax_ops`).

``fn`` is any function of arrays (the model input is the last example argument), or a
Flax NNX or Equinox module called on it. Flax linen (``model.apply``) and Haiku
(``transformed.apply``) models are functions of their parameters and input. Nested
``jit``, ``custom_jvp`` and ``remat`` calls are followed into.

Layer names are module paths (:mod:`.jax_models`): NNX and Equinox attribute paths
(``layer1.0.conv1``), linen scope paths, Haiku module names; otherwise the module owning the
parameter a layer reads, or the op. A module without submodules
is one layer; element-wise steps of one call (a bias add, a norm's arithmetic, the ops
inside ``jax.nn.gelu``) join the layer they follow.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import jax
import numpy as np

from ..errors import SpecError
from . import jax_layout, jax_ops
from .builder import INPUT, Offender, SpecBuilder, Unsupported, Value, check_policy, chosen
from .jax_calls import OPAQUE_CALLS, read_call
from .jax_layout import input_axes
from .jax_models import (
    LOOP,
    body_of,
    called_leaves,
    leaves_of,
    loop_steps,
    model_of,
    module_at,
    module_paths,
    param_paths,
    stack_entries,
    trace_error,
)
from .jax_ops import Eqn

RULES = {**jax_ops.RULES, **jax_layout.RULES}

FRAMEWORK = "jax"
# functions whose whole call is one element-wise layer: jit name -> spec op
NAMED = {"relu": "relu", "relu6": "relu6", "silu": "silu", "swish": "silu",
         "hard_silu": "hard_swish", "hard_swish": "hard_swish", "gelu": "gelu",
         "sigmoid": "sigmoid", "hard_sigmoid": "hard_sigmoid", "leaky_relu": "leaky_relu",
         "elu": "elu", "celu": "elu", "selu": "selu", "mish": "mish", "softmax": "softmax",
         "log_softmax": "softmax", "softplus": "identity", "clip": "identity",
         "hard_tanh": "identity", "standardize": "identity"}
PRIMITIVE_KINDS = {"logistic": "sigmoid", "tanh": "tanh"}
WORDS = {"conv_general_dilated": "conv", "reduce_window_max": "max_pool",
         "reduce_window_sum": "avg_pool", "reduce_window": "pool", "concatenate": "cat",
         "dot_general": "dense", "reduce_sum": "sum", "reduce_max": "amax", "pad": "pad",
         "slice": "crop", "_resize": "interpolate", "_pad": "pad"}
MAX_STEPS = 1024  # loop steps unrolled in one model, at most
KIND_WORDS = ("batchnorm", "layernorm", "groupnorm", "instancenorm", "dropout", "rmsnorm")


@dataclass(frozen=True)
class Param:
    """A parameter (or a value computed from parameters only): the module owning it."""

    path: str


@dataclass(frozen=True)
class Ctx:
    stack: tuple[str, ...]  # enclosing name-stack entries
    fn: tuple | None = None  # (spec op, call number, name) of an enclosing named function
    line: str = ""  # the model's source line of the outermost enclosing call


def from_jax(fn, *example_args, outputs=None, name: str | None = None,
             on_unsupported: str = "error", gates: str = "local") -> dict:
    """The rfsearch spec of a JAX model, traced at ``example_args`` (the last one is the
    model input: ``[N, H, W, C]`` for Flax and Haiku, ``[C, H, W]`` for Equinox; the
    spatial axes are those its first convolution or pool reads as spatial).

    ``outputs``: module paths to cut the model at; ``on_unsupported``: ``"error"`` or
    ``"identity"``; ``gates``: ``"local"`` (a one-unit channel gate scales each unit) or
    ``"global"`` (it reads the whole map it was pooled from)."""
    check_policy(on_unsupported, gates)
    if not example_args:
        raise SpecError("from_jax: give the example input (and any parameters before it)")
    model = model_of(fn, example_args)
    example = np.shape(example_args[-1])
    if not hasattr(example_args[-1], "shape") or len(example) < 2:
        raise SpecError(f"from_jax: the last example argument must be the input array, got "
                        f"{type(example_args[-1]).__name__} of shape {list(example)}")
    with model.scopes() as seen:
        try:
            closed = jax.make_jaxpr(model.call)(*model.args)
        except Exception as err:
            raise SpecError(f"from_jax: the model cannot be traced at the example input "
                            f"({trace_error(err)})") from None
    jaxpr = closed.jaxpr
    axes = input_axes(jaxpr, len(jaxpr.invars) - 1, batched=model.kind != "equinox")
    if axes is None and not 3 <= len(example) <= 5:
        raise SpecError(f"from_jax: cannot tell the spatial axes of the input {list(example)}:"
                        " no convolution or pool reads it")
    builder = SpecBuilder(FRAMEWORK, len(axes or example[2:]), gates=gates)
    if axes is None:
        axes = tuple(range(1, len(example) - 1))
        builder.assume("no convolution or pool reads the input: its layout is taken as "
                       "channel-last with a batch axis (N, spatial..., C)")
    leaves = called_leaves(seen) if seen else leaves_of(jaxpr, model.root)
    walker = Walker(builder, leaves, seen or {}, model.root)
    walker.input_rank = len(example)
    ins = [Param(p) for p in param_paths(model.args[:-1], model.strip)]
    ins.append(Value(INPUT, axes, tuple(example[a] for a in axes), len(example)))
    results = walker.run(jaxpr, closed.consts, ins, Ctx(()))
    wanted = walker.outputs(results, outputs)
    source = {"framework": FRAMEWORK, "tracer": f"jax.make_jaxpr ({model.kind})",
              "input_shape": list(example),
              "input_size": "x".join(str(example[a]) for a in axes)}
    return builder.spec(name or model.name, wanted, on_unsupported, source)


# ---------------------------------------------------------------- the walk

class Walker:
    """Maps a jaxpr's equations in order, following calls into their jaxprs."""

    def __init__(self, builder: SpecBuilder, leaves: set, kinds: dict, root: str):
        self.builder, self.leaves, self.kinds, self.root = builder, leaves, kinds, root
        self.input_rank = 0  # the model input's (a tensor of this rank holding the map is one)
        self.units: dict = {}
        self.reused: dict = {}
        self.produced: dict[str, Value] = {}
        self.numbers = itertools.count(1)
        self.steps, self.nested = 0, 0  # loop steps unrolled so far; loops entered

    def run(self, jaxpr, consts, args, ctx: Ctx) -> list:
        env = dict(zip(jaxpr.invars, args, strict=True))
        env.update((v, None) for v in jaxpr.constvars)
        for eqn in jaxpr.eqns:
            outs = self.equation(eqn, [_read(env, v) for v in eqn.invars], ctx)
            env.update(zip(eqn.outvars, outs, strict=True))
        return [_read(env, v) for v in jaxpr.outvars]

    def equation(self, eqn, ins: list, ctx: Ctx) -> list:
        stack = ctx.stack + stack_entries(eqn.source_info.name_stack)
        values = [v for v in ins if isinstance(v, Value)]
        if not values:
            param = next((v for v in ins if isinstance(v, Param)), None)
            return [param] * len(eqn.outvars)
        sub = body_of(eqn)
        fn_name = eqn.params.get("name")
        if ctx.fn is None:  # a library function called from the model (jax.nn.gelu)
            call = _library_call(eqn)
            if call is not None and call[0] in NAMED:
                ctx = Ctx(ctx.stack, (NAMED[call[0]], call, call[0]), ctx.line)
        if eqn.primitive.name == LOOP:
            return self._loop(eqn, ins, Ctx(stack, ctx.fn, ctx.line or _line(eqn)))
        if sub is not None and fn_name not in OPAQUE_CALLS:
            fn = ctx.fn
            if fn_name in NAMED and fn is None:
                fn = (NAMED[fn_name], next(self.numbers), fn_name)
            inner = getattr(sub, "jaxpr", sub)
            return self.run(inner, getattr(sub, "consts", ()), ins,
                            Ctx(stack, fn, ctx.line or _line(eqn)))
        prim = fn_name if sub is not None else eqn.primitive.name
        e = self._eqn(eqn, prim, ins, stack, ctx)
        at = 0  # the output the result stands for
        try:
            if sub is not None:
                result = read_call(e, sub, eqn)
            elif prim in RULES:
                result = RULES[prim](e)
            else:
                raise Unsupported("no rule maps this primitive")
        except Unsupported as why:  # the offender stands for the output shaped like the
            at = _shaped_like(eqn, ins)  # map it reads (a while_loop's, not its counter)
            e.out = tuple(eqn.outvars[at].aval.shape)
            result = self._offend(e, ctx.line or _line(eqn), values, str(why))
        for path in module_paths(stack, self.root):
            self.produced[path] = result
        return [result if i == at else None for i in range(len(eqn.outvars))]

    def _loop(self, eqn, ins: list, ctx: Ctx) -> list:
        """A scan (``lax.scan``, ``fori_loop``, linen's ``nn.scan``), unrolled: its body
        runs ``length`` times, each step's carry the next one's input. A loop over slices
        of the map, one stacking maps (its ``ys``), or more than MAX_STEPS steps in all
        (nested loops multiply) is refused."""
        p = eqn.params
        consts, split = ins[:p["num_consts"]], p["num_consts"] + p["num_carry"]
        carry, xs = ins[p["num_consts"]:split], ins[split:]
        # an outermost loop counts its steps with those of the loops inside it
        steps = 0 if self.nested else p["length"] * (1 + loop_steps(p["jaxpr"].jaxpr))
        why = ("a loop over slices of the map" if any(isinstance(v, Value) for v in xs)
               else f"a loop of {steps} steps with the loops inside it (at most {MAX_STEPS} "
               "are unrolled in a model)" if self.steps + steps > MAX_STEPS else None)
        self.steps += steps if why is None else 0
        ys: list = [None] * (len(eqn.outvars) - len(carry))
        self.nested += 1
        try:
            for _ in range(p["length"] if why is None else 0):
                outs = self.run(p["jaxpr"].jaxpr, p["jaxpr"].consts, [*consts, *carry, *xs],
                                ctx)
                carry, ys = outs[:len(carry)], outs[len(carry):]
        finally:
            self.nested -= 1
        if why is None and any(isinstance(v, Value) and v.spatial for v in ys):
            why = "a loop that stacks maps (its ys)"
        if why is None:
            return [*carry, *ys]
        e = self._eqn(eqn, LOOP, ins, ctx.stack, ctx)
        maps = [i for i, v in enumerate(carry) if isinstance(v, Value)] + list(
            range(len(carry), len(eqn.outvars)))  # what the map may reach: carries, ys
        e.out = tuple(eqn.outvars[maps[0]].aval.shape)
        off = self._offend(e, ctx.line, [v for v in ins if isinstance(v, Value)], why)
        return [off if i in maps else None for i in range(len(eqn.outvars))]

    def _eqn(self, eqn, prim: str, ins: list, stack, ctx: Ctx) -> Eqn:
        path, call = module_at(stack, self.root)
        if not path:
            path = next((v.path for v in ins if isinstance(v, Param) and v.path), "")
            call = None
        leaf = path in self.leaves or (not self.leaves and path and not call)
        word = ctx.fn[2] if ctx.fn and not leaf else WORDS.get(prim, prim)
        base = path if leaf else ".".join(p for p in (path, word) if p)
        if leaf:
            unit, kind = ("leaf", path, call), _kind(self.kinds.get(path, path))
            if kind == "identity" and ctx.fn:  # a module wrapping an activation function
                kind = ctx.fn[0]
        elif ctx.fn:
            unit, kind = ("fn", ctx.fn[1]), ctx.fn[0]
        else:
            unit, kind = ("path", path, call), PRIMITIVE_KINDS.get(prim, "identity")
        shapes = [tuple(getattr(v.aval, "shape", ())) for v in eqn.invars]
        out = tuple(getattr(eqn.outvars[0].aval, "shape", ()))
        return Eqn(prim, dict(eqn.params), ins, shapes, out, base, kind, unit, self.builder,
                   self.units, self.reused, input_rank=self.input_rank,
                   module=self.kinds.get(path, "") if leaf else "")

    def _offend(self, e: Eqn, line: str, values: list[Value], why: str) -> Value:
        ins = ", ".join("x".join(map(str, v.sizes)) or "features" for v in values)
        path = e.base if e.unit and e.unit[0] == "leaf" else e.unit[1] if e.unit and \
            e.unit[0] == "path" else ""
        offender = Offender(e.base, path, OPAQUE_CALLS.get(e.prim, f"jax.lax.{e.prim}"),
                            f"in {ins} -> out {list(e.out)}", line, why)
        node = self.builder.offend(e.base, values, offender, e.out)
        first = values[0]
        axes = first.axes if len(e.out) == first.rank else ()
        return Value(node, axes, tuple(e.out[a] for a in axes), len(e.out))

    def outputs(self, results: list, outputs) -> list[Value]:
        if outputs is None:
            found = [v for v in results if isinstance(v, Value)]
            if not found:
                raise SpecError("from_jax: the model returns nothing computed from its input")
            return found
        return chosen(self.produced, outputs, "from_jax", "module")


def _read(env: dict, var):
    from jax.extend.core import Literal

    return None if isinstance(var, Literal) else env[var]


def _shaped_like(eqn, ins: list) -> int:
    """The output of ``eqn`` shaped as its first input from the model input (else 0)."""
    shape = next(v.aval.shape for v, x in zip(eqn.invars, ins, strict=True)
                 if isinstance(x, Value))
    return next((i for i, v in enumerate(eqn.outvars) if v.aval.shape == shape), 0)


def _kind(name: str) -> str:
    """The element-wise op a module is, by its class (or scope) name."""
    word = "".join(ch for ch in name.rsplit(".", 1)[-1].lower() if ch.isalpha())
    for kind in KIND_WORDS:
        if kind in word:
            return "layernorm" if kind == "rmsnorm" else kind
    return "identity"


LIBRARIES = ("site-packages", "dist-packages", "/lib/python3", "rfsearch/importers")


def _line(eqn) -> str:
    """The model's own source line that made the equation: the innermost frame outside
    the installed libraries (empty if there is none)."""
    traceback = getattr(eqn.source_info, "traceback", None)
    for frame in getattr(traceback, "frames", ()):
        if not any(part in frame.file_name for part in LIBRARIES):
            return f"{frame.file_name.rsplit('/', 1)[-1]}:{frame.line_num} in " \
                   f"{frame.function_name}"
    return ""


def _library_call(eqn) -> tuple | None:
    """(name, file, line) of the library function the model's code called to make the
    equation: the outermost library frame below the model's innermost frame."""
    traceback = getattr(eqn.source_info, "traceback", None)
    frames = list(getattr(traceback, "frames", ()))
    for inner, outer in itertools.pairwise(frames):
        if not any(part in outer.file_name for part in LIBRARIES):
            if not any(part in inner.file_name for part in LIBRARIES):
                return None
            return inner.function_name, outer.file_name, outer.line_num
    return None


def supported_ops() -> list[str]:
    """The JAX primitives :func:`from_jax` maps (plus the calls it reads whole:
    ``jax.image.resize``, ``jax.numpy.pad``)."""
    return sorted({*RULES, *OPAQUE_CALLS.values()})
