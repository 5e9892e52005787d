"""Hypothesis strategies for random rfsearch specs: chains, DAGs and batches of them.

Kernels, strides and input sizes are kept small so that some networks fit their input
size and others do not, and strides vary enough that some merges see different jumps:
both valid rows and error rows occur. Every layer gets an explicit name; defaults
(inputs, stride, dilation, padding) are sometimes spelled out and sometimes omitted.
In a DAG every layer is an ancestor of the output (dangling branches are merged in at
the end), so the network row's validity does not depend on how unused layers count.
"""

from __future__ import annotations

from hypothesis import strategies as st
from reference import ELEMENTWISE_OPS, INPUT, MERGE_OPS, WHOLE_MAP_OPS, WINDOW_OPS

PADDING_MODES = ("valid", "same", "same_lower")
STRIDES = (1, 1, 2, 3)  # stride 1 twice as likely: more merges see equal jumps


def int_or_pair(values: st.SearchStrategy[int]) -> st.SearchStrategy:
    """An int (both axes) or an [h, w] list."""
    return st.one_of(values, st.lists(values, min_size=2, max_size=2))


def paddings() -> st.SearchStrategy:
    """Every padding spelling: int, [ph, pw], [[top, bottom], [left, right]], modes."""
    amount = st.integers(0, 2)
    return st.one_of(
        amount,
        st.lists(amount, min_size=2, max_size=2),
        st.lists(st.lists(amount, min_size=2, max_size=2), min_size=2, max_size=2),
        st.sampled_from(PADDING_MODES),
    )


def input_sizes(allow_none: bool = True) -> st.SearchStrategy:
    """None (unknown), a square size, or (H, W)."""
    size = st.integers(1, 40)
    known = st.one_of(size, st.tuples(size, size))
    return st.one_of(st.none(), known) if allow_none else known


def _set_or_omit(draw, layer: dict, key: str, value, default) -> None:
    """Set ``layer[key] = value``, or (sometimes) leave it out when it is the default."""
    if value != default or draw(st.booleans()):
        layer[key] = value


@st.composite
def windowed_layers(draw, name: str) -> dict:
    """A conv / maxpool / avgpool layer with small, possibly non-square parameters."""
    layer = {"name": name, "op": draw(st.sampled_from(sorted(WINDOW_OPS)))}
    layer["kernel"] = draw(int_or_pair(st.integers(1, 4)))
    _set_or_omit(draw, layer, "stride", draw(int_or_pair(st.sampled_from(STRIDES))), 1)
    _set_or_omit(draw, layer, "dilation", draw(int_or_pair(st.sampled_from([1, 2]))), 1)
    _set_or_omit(draw, layer, "padding", draw(paddings()), 0)
    return layer


@st.composite
def unary_layers(draw, name: str) -> dict:
    """A windowed layer (mostly) or an element-wise one."""
    if draw(st.integers(0, 3)) == 0:
        return {"name": name, "op": draw(st.sampled_from(sorted(ELEMENTWISE_OPS)))}
    return draw(windowed_layers(name))


@st.composite
def networks(draw, name: str = "net", max_layers: int = 7, merges: bool = True,
             whole_map: bool = True) -> dict:
    """A random network spec: a chain, or (``merges``) a DAG of add / concat merges.

    Unary layers read the previous node, or (in DAGs) sometimes any earlier node;
    merges read the previous node and 1-2 other earlier nodes. Dangling nodes are
    merged into the output. ``whole_map`` sometimes ends the network in a
    global_pool or dense layer.
    """
    nodes = [INPUT]  # names a layer may read, in definition order
    consumed: set[str] = set()
    layers = []
    for index in range(draw(st.integers(1, max_layers))):
        layer_name = f"L{index}"
        previous = nodes[-1]
        if merges and len(nodes) > 1 and draw(st.integers(0, 3)) == 0:
            others = draw(st.lists(st.sampled_from(nodes[:-1]), min_size=1, max_size=2,
                                   unique=True))
            layer = {"name": layer_name, "op": draw(st.sampled_from(sorted(MERGE_OPS)))}
            inputs = [previous, *others]
        else:
            layer = draw(unary_layers(layer_name))
            branch = merges and draw(st.integers(0, 4)) == 0
            inputs = [draw(st.sampled_from(nodes)) if branch else previous]
        _set_or_omit(draw, layer, "inputs", inputs, [previous])
        layers.append(layer)
        consumed.update(inputs)
        nodes.append(layer_name)
    dangling = [n for n in nodes[1:-1] if n not in consumed]
    if dangling:
        op = draw(st.sampled_from(sorted(MERGE_OPS)))
        layers.append({"name": "merge_out", "op": op, "inputs": [nodes[-1], *dangling]})
    if whole_map and draw(st.integers(0, 4)) == 0:
        layers.append({"name": "head", "op": draw(st.sampled_from(sorted(WHOLE_MAP_OPS)))})
    spec = {"name": name, "layers": layers}
    if draw(st.booleans()):
        spec["output"] = layers[-1]["name"]
    return spec


def chains(name: str = "net", max_layers: int = 7, whole_map: bool = True):
    """Random chains (every layer reads the previous one)."""
    return networks(name=name, max_layers=max_layers, merges=False, whole_map=whole_map)


def dags(name: str = "net", max_layers: int = 7, whole_map: bool = True):
    """Random DAGs with add / concat merges of 2-3 earlier nodes."""
    return networks(name=name, max_layers=max_layers, merges=True, whole_map=whole_map)


@st.composite
def batches(draw, kind=dags, min_size: int = 0, max_size: int = 6, **kwargs):
    """(specs, input_size): several networks with unique names, one shared input size."""
    count = draw(st.integers(min_size, max_size))
    specs = [draw(kind(name=f"net{i}", **kwargs)) for i in range(count)]
    return specs, draw(input_sizes())
