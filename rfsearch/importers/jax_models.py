"""What :func:`~rfsearch.importers.from_jax` reads off a JAX model besides its jaxpr:
which function to trace, and the module paths that name its layers.

NNX and Equinox modules are traced as functions of their arrays; while tracing, each
module's call runs in a ``jax.named_scope`` of its attribute path (``rfsearch:layer1.0.conv1#7``:
path and call number), which every equation it makes carries in its name stack. Flax linen
modules get the same scopes through ``nn.intercept_methods``; Haiku keeps its module names
in the name stack itself. A parameter's key path names the module that owns it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import sys
from contextlib import contextmanager
from dataclasses import dataclass

MARK = "rfsearch:"  # our name scopes: rfsearch:<module path>#<call number>
SUBJAXPRS = ("jaxpr", "call_jaxpr", "fun_jaxpr")  # params holding a called jaxpr
# Primitives that call their jaxpr once (followed inline), and the loop whose body is
# unrolled; another primitive's jaxpr is not the model's (a reduce_window's reducer).
CALLS = ("jit", "pjit", "closed_call", "core_call", "remat", "remat2", "checkpoint",
         "custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr", "named_call")
LOOP = "scan"


def body_of(eqn):
    """The jaxpr a call or a scan runs (a ClosedJaxpr or a Jaxpr), else None."""
    if eqn.primitive.name not in (*CALLS, LOOP):
        return None
    return next((eqn.params[k] for k in SUBJAXPRS if k in eqn.params), None)


def loop_steps(jaxpr) -> int:
    """Loop steps unrolling ``jaxpr`` takes: each scan's length times one plus its body's
    own (nested loops multiply), through calls."""
    total = 0
    for eqn in jaxpr.eqns:
        sub = body_of(eqn)
        if sub is None:
            continue
        inner = loop_steps(getattr(sub, "jaxpr", sub))
        total += eqn.params["length"] * (1 + inner) if eqn.primitive.name == LOOP else inner
    return total


@dataclass
class Model:
    call: object  # the function traced
    args: tuple  # its example arguments (parameters first, input last)
    kind: str
    name: str
    scopes: object = contextlib.nullcontext  # while tracing: module calls in named scopes
    root: str = ""  # the name stack's root entry to drop
    strip: int = 0  # leading parameter-path entries to drop (linen's collection names)


def model_of(fn, args) -> Model:
    nnx = sys.modules.get("flax.nnx")
    eqx = sys.modules.get("equinox")
    linen = sys.modules.get("flax.linen")
    if nnx is not None and isinstance(fn, nnx.Module):
        graphdef, state = nnx.split(fn)

        def call(state, *inputs):
            model = nnx.merge(graphdef, state)
            with contextlib.suppress(Exception):  # inference: running statistics, no dropout
                model.eval()
            with _scoped(module_tree(model)):
                return model(*inputs)
        return Model(call, (state, *args), "flax.nnx", type(fn).__name__,
                     lambda: _patched(module_tree(fn)))
    if eqx is not None and isinstance(fn, eqx.Module):
        params, static = eqx.partition(fn, eqx.is_array)

        def call(params, *inputs):
            model = eqx.nn.inference_mode(eqx.combine(params, static))
            with _scoped(module_tree(model)):
                return model(*inputs)
        return Model(call, (params, *args), "equinox", type(fn).__name__,
                     lambda: _patched(module_tree(fn)))
    owner = getattr(fn, "__self__", None)
    if linen is not None and isinstance(owner, linen.Module):
        return Model(fn, args, "flax.linen", type(owner).__name__,
                     lambda: _intercepted(linen), root=type(owner).__name__, strip=1)
    return Model(fn, args, "function", getattr(fn, "__name__", type(fn).__name__))


_calls = itertools.count(1)


_scoping: dict[int, str] = {}  # id(module) -> path, for the modules being traced


_seen: dict[str, str] = {}  # path -> class name of every module called while tracing


def _enter(path: str, cls: str):
    import jax

    _seen.setdefault(path, cls)
    return jax.named_scope(f"{MARK}{path}#{next(_calls)}")


@contextmanager
def _patched(modules):
    """NNX / Equinox: every module class of the tree runs its call inside a named scope of
    the module's path (found by identity in :data:`_scoping`); yields the paths called."""
    classes = {type(m) for _, m in modules}
    saved = {cls: cls.__dict__.get("__call__") for cls in classes}
    for cls in classes:
        original = cls.__call__

        def wrapper(self, *a, _original=original, **k):
            path = _scoping.get(id(self))
            if not path:
                return _original(self, *a, **k)
            with _enter(path, type(self).__name__):
                return _original(self, *a, **k)
        cls.__call__ = wrapper
    _seen.clear()
    try:
        yield _seen
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


@contextmanager
def _intercepted(linen):
    """Flax linen: every submodule's ``__call__`` runs in a named scope of its path."""
    def interceptor(method, args, kwargs, context):
        path = ".".join(context.module.path)
        if context.method_name != "__call__" or not path:
            return method(*args, **kwargs)
        with _enter(path, type(context.module).__name__):
            return method(*args, **kwargs)
    _seen.clear()
    with linen.intercept_methods(interceptor):
        yield _seen


def called_leaves(seen: dict) -> set[str]:
    return {p for p in seen if p and not any(q.startswith(p + ".") for q in seen)}


def trace_error(err: Exception) -> str:
    """Why tracing failed, in a line (control flow on traced values named as such)."""
    name = type(err).__name__
    if "Concretization" in name or "TracerBool" in name or "TracerInteger" in name:
        return "data-dependent control flow: the geometry could change with the input"
    return _first_line(err)


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def module_tree(model) -> list[tuple[str, object]]:
    """(dotted attribute path, module) for every module of an NNX or Equinox model, the
    model itself first with path ``""``; a module reachable twice keeps its first path."""
    nnx = sys.modules.get("flax.nnx")
    if nnx is not None and isinstance(model, nnx.Module):
        found = [(".".join(map(str, path)), node) for path, node in nnx.iter_graph(model)
                 if isinstance(node, nnx.Module)]
    else:
        found = list(_equinox_modules(model, ""))
    seen, tree = set(), []
    for path, module in sorted(found, key=lambda pm: (pm[0].count("."), pm[0])):
        if id(module) not in seen:
            seen.add(id(module))
            tree.append((path, module))
    return tree


def _equinox_modules(obj, path: str):
    eqx = sys.modules.get("equinox")
    if eqx is not None and isinstance(obj, eqx.Module):
        yield path, obj
        children = [(f.name, getattr(obj, f.name, None)) for f in dataclasses.fields(obj)]
    elif isinstance(obj, (list, tuple)):
        children = list(enumerate(obj))
    elif isinstance(obj, dict):
        children = list(obj.items())
    else:
        return
    for key, child in children:
        yield from _equinox_modules(child, f"{path}.{key}" if path else str(key))


def param_paths(params: tuple, strip: int) -> list[str]:
    """For every array leaf of ``params`` (in the order the jaxpr takes them), the dotted
    path of the module owning it (its key path less the parameter's own name)."""
    import jax

    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    paths = []
    for keys, _ in leaves:
        parts = [_key(k) for k in keys[1:]]  # keys[0]: which argument
        if parts and parts[-1] == "value":  # an NNX Variable's payload
            parts.pop()
        parts = parts[strip:-1]
        paths.append(".".join(p.replace("/~/", ".").replace("/", ".") for p in parts))
    return paths


def _key(key) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def leaves_of(jaxpr, root: str) -> set[str]:
    """Module paths of the name stacks that no other path extends (linen, Haiku)."""
    paths: set[str] = set()
    for eqn in _equations(jaxpr):
        parts = [s for s in str(eqn.source_info.name_stack).split("/")
                 if s and s != "~" and "(" not in s]
        if root and parts[:1] == [root]:
            parts = parts[1:]
        paths.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {p for p in paths if not any(q.startswith(p + ".") for q in paths)}


def _equations(jaxpr):
    for eqn in jaxpr.eqns:
        yield eqn
        sub = body_of(eqn)
        if sub is not None:
            yield from _equations(getattr(sub, "jaxpr", sub))


def stack_entries(name_stack) -> tuple[str, ...]:
    text = str(name_stack)
    return tuple(t for t in text.split("/") if t) if text else ()


def module_at(stack, root: str) -> tuple[str, object]:
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


def module_paths(stack, root: str) -> list[str]:
    """Every module path the value was computed inside (for ``outputs=``)."""
    ours = [s[len(MARK):].rpartition("#")[0] for s in stack if s.startswith(MARK)]
    if ours:
        return ours
    parts = _plain(stack, root)
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
