"""What :func:`from_jax` reads off a JAX model before mapping it: the module tree of an
NNX or Equinox model, the module owning each parameter, the module paths of a name
stack, and which dimensions of the input are spatial."""

from __future__ import annotations

import dataclasses
import sys

from .jax_ops import carried

WINDOW_PRIMITIVES = ("reduce_window_max", "reduce_window_min", "reduce_window_sum",
                     "reduce_window")
SUBJAXPRS = ("jaxpr", "call_jaxpr", "fun_jaxpr")


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
        for key in SUBJAXPRS:
            if key in eqn.params:
                yield from _equations(getattr(eqn.params[key], "jaxpr", eqn.params[key]))


def input_axes(jaxpr, index: int) -> tuple[int, ...] | None:
    """The dimensions of input ``index`` that its first convolution or pool reads as
    spatial, followed through transposes, reshapes, broadcasts and element-wise ops
    (None if no window reads it)."""
    var = jaxpr.invars[index]
    origin = {var: tuple(range(len(var.aval.shape)))}  # var -> input dim per tensor dim
    return _search(jaxpr, origin)


def _search(jaxpr, origin: dict):
    for eqn in jaxpr.eqns:
        ins = [origin.get(v) if not hasattr(v, "val") else None for v in eqn.invars]
        tracked = next((o for o in ins if o is not None), None)
        if tracked is None:
            continue
        prim, params = eqn.primitive.name, eqn.params
        sub = next((params[k] for k in SUBJAXPRS if k in params), None)
        if sub is not None:
            inner = getattr(sub, "jaxpr", sub)
            found = _search(inner, {v: o for v, o in zip(inner.invars, ins, strict=True)
                                    if o is not None})
            if found is not None:
                return found
            for out in eqn.outvars:  # a call keeping the rank (a resize) keeps the dims
                if len(out.aval.shape) == len(tracked):
                    origin[out] = tracked
            continue
        if prim == "conv_general_dilated" and ins[0] is not None:
            return tuple(sorted(ins[0][d] for d in params["dimension_numbers"][0][2:]
                                if ins[0][d] is not None))
        if prim in WINDOW_PRIMITIVES:
            window = [d for d, (w, s) in enumerate(zip(params["window_dimensions"],
                                                       params["window_strides"], strict=True))
                      if w > 1 or s > 1]
            return tuple(sorted(tracked[d] for d in window if tracked[d] is not None))
        for out in eqn.outvars:
            mapped = _follow(prim, params, eqn.invars[0].aval.shape, out.aval.shape, tracked)
            if mapped is not None:
                origin[out] = mapped
    return None


def _follow(prim, params, old, new, tracked):
    """The input dims held by each dimension of an op's result (None: not followed)."""
    if prim == "transpose":
        return tuple(tracked[p] for p in params["permutation"])
    if prim == "broadcast_in_dim":
        result = [None] * len(new)
        for d, b in enumerate(params["broadcast_dimensions"]):
            result[b] = tracked[d]
        return tuple(result)
    if prim in ("reshape", "squeeze"):
        kept = [d for d in range(len(old)) if old[d] > 1]
        where = carried(old, new, kept)
        if where is None:
            return None
        result = [None] * len(new)
        for d, w in zip(kept, where, strict=True):
            result[w] = tracked[d]
        return tuple(result)
    if tuple(old) == tuple(new):  # element-wise
        return tracked
    return None
