"""NAS-Bench-201 and NAS-Bench-101 macro skeletons with a given cell, as specs.

NAS-Bench-201 (Dong & Yang 2020): stem 3x3 conv, three stages of 5 cells joined by
two ResNet reduction blocks (3x3/2 -> 3x3 main path; avg-pool 2x2/2 -> 1x1 shortcut).
That shortcut is centred half a pixel off the main path, so every network of the space
is misaligned there: ``aligned`` comes out False, with the union still reported.

NAS-Bench-101 (Ying et al. 2019): stem 3x3 conv, three stacks of 3 cells joined by
2x2/2 max pools; a cell is a DAG of up to 7 vertices (conv3x3, conv1x1, maxpool3x3)
whose output concatenates its vertices and adds a projection of the input.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import SpecError
from .graph import Graph

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NB201_ALL_3X3 = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
                 "+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")


def parse_arch_str(arch: str) -> list[list[tuple[str, int]]]:
    """``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` -> per node j (1..3) its (op, source) edges."""
    nodes = []
    for j, part in enumerate(str(arch).split("+"), start=1):
        edges = [e for e in part.strip().split("|") if e]
        if len(edges) != j:
            raise SpecError(f"NAS-Bench-201 arch {arch!r}: node {j} needs {j} edges, "
                            f"got {len(edges)}")
        parsed = []
        for i, edge in enumerate(edges):
            op, _, source = edge.partition("~")
            if op not in NB201_OPS or source != str(i):
                raise SpecError(f"NAS-Bench-201 arch {arch!r}: bad edge {edge!r} (expected "
                                f"'<op>~{i}' with op in {', '.join(NB201_OPS)})")
            parsed.append((op, i))
        nodes.append(parsed)
    if len(nodes) != 3:
        raise SpecError(f"NAS-Bench-201 arch {arch!r}: needs 3 nodes separated by '+', "
                        f"got {len(nodes)}")
    return nodes


def _nb201_edge(g: Graph, name: str, op: str, source: str) -> str:
    if op == "skip_connect":
        return g.act(name, "identity", source)
    if op == "avg_pool_3x3":
        return g.avgpool(name, 3, 1, 1, inputs=source)
    return g.conv(name, 3 if op == "nor_conv_3x3" else 1, 1, 1 if op == "nor_conv_3x3" else 0,
                  inputs=source)


def _nb201_cell(g: Graph, prefix: str, nodes, x: str) -> str:
    """One cell: node j = sum of op(node i) over its live edges; a node with no live
    edge (only 'none' edges, or edges from such nodes) is zero and dropped."""
    live: dict[int, str] = {0: x}
    for j, edges in enumerate(nodes, start=1):
        terms = [_nb201_edge(g, f"{prefix}/{i}->{j}", op, live[i])
                 for op, i in edges if op != "none" and i in live]
        if len(terms) > 1:
            live[j] = g.add(f"{prefix}/node{j}", terms)
        elif terms:
            live[j] = terms[0]
    if 3 not in live:
        raise SpecError("cell has no path from its input to its output (all paths 'none')")
    return live[3]


def _nb201_reduction(g: Graph, prefix: str, x: str) -> str:
    """ResNet basic block with stride 2 and an avg-pool 2x2/2 -> 1x1 shortcut."""
    g.conv(f"{prefix}/conv_a", 3, 2, 1, inputs=x)
    body = g.conv(f"{prefix}/conv_b", 3, 1, 1)
    g.avgpool(f"{prefix}/downsample.pool", 2, 2, inputs=x)
    shortcut = g.conv(f"{prefix}/downsample.conv", 1)
    return g.add(f"{prefix}/add", [body, shortcut])


def nasbench201(arch: str = NB201_ALL_3X3, cells_per_stage: int = 5) -> dict:
    """The NAS-Bench-201 network of cell ``arch`` (its ``arch_str``) up to ``lastact``."""
    nodes = parse_arch_str(arch)
    g = Graph(f"nasbench201:{arch}", "NAS-Bench-201 skeleton up to lastact")
    x = g.conv("stem", 3, 1, 1)
    index = 0
    for stage in range(3):
        if stage:
            x = _nb201_reduction(g, f"cells.{index}", x)
            index += 1
        for _ in range(cells_per_stage):
            x = _nb201_cell(g, f"cells.{index}", nodes, x)
            index += 1
    g.act("lastact", "relu", x)
    return g.spec()


NB101_OPS = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")
NB101_EXAMPLE = ([[0, 1, 1, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1],
                  [0, 0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1],
                  [0, 0, 0, 0, 0, 0, 0]],
                 ["input", "conv1x1-bn-relu", "conv3x3-bn-relu", "conv3x3-bn-relu",
                  "conv3x3-bn-relu", "maxpool3x3", "output"])


def _check_nb101(matrix, ops) -> list[list[int]]:
    n = len(matrix)
    rows = [[int(v) for v in row] for row in matrix]
    if not 2 <= n <= 7 or any(len(r) != n for r in rows) or len(ops) != n:
        raise SpecError(f"NAS-Bench-101 cell: need a square matrix of 2..7 vertices and one "
                        f"op per vertex, got {n} rows and {len(ops)} ops")
    if any(rows[i][j] not in (0, 1) or (rows[i][j] and j <= i)
           for i in range(n) for j in range(n)):
        raise SpecError("NAS-Bench-101 cell: the matrix must be strictly upper triangular 0/1")
    inner = list(ops[1:-1])
    if ops[0] != "input" or ops[-1] != "output" or any(op not in NB101_OPS for op in inner):
        raise SpecError(f"NAS-Bench-101 cell: ops must be 'input', then {', '.join(NB101_OPS)},"
                        f" then 'output'; got {list(ops)}")
    return rows


def _nb101_cell(g: Graph, prefix: str, rows, ops, x: str) -> str:
    """Vertex v = op(sum of its inputs); output = concat(vertices into it) + input.
    Only vertices on an input-to-output path exist (as in nasbench's pruning)."""
    n = len(rows)
    reach_in, reach_out = {0}, {n - 1}
    for v in range(1, n):
        if any(rows[u][v] and u in reach_in for u in range(v)):
            reach_in.add(v)
    for v in range(n - 2, -1, -1):
        if any(rows[v][w] and w in reach_out for w in range(v + 1, n)):
            reach_out.add(v)
    live = reach_in & reach_out
    if n - 1 not in live:
        raise SpecError("NAS-Bench-101 cell: no path from the input to the output")
    out: dict[int, str] = {0: x}
    for v in range(1, n - 1):
        if v not in live:
            continue
        preds = [out[u] for u in range(v) if rows[u][v] and u in live]
        src = preds[0] if len(preds) == 1 else g.add(f"{prefix}/vertex{v}.sum", preds)
        if ops[v] == "maxpool3x3":
            out[v] = g.maxpool(f"{prefix}/vertex{v}", 3, 1, "same", inputs=src)
        else:
            out[v] = g.conv(f"{prefix}/vertex{v}", 3 if ops[v].startswith("conv3") else 1,
                            1, "same", inputs=src)
    inner = [out[u] for u in range(1, n - 1) if rows[u][n - 1] and u in live]
    y = inner[0] if len(inner) == 1 else g.concat(f"{prefix}/concat", inner) if inner else None
    if rows[0][n - 1]:
        proj = g.conv(f"{prefix}/input_projection", 1, inputs=x)
        y = proj if y is None else g.add(f"{prefix}/output", [y, proj])
    return y


def nasbench101(matrix: Sequence[Sequence[int]] = NB101_EXAMPLE[0],
                ops: Sequence[str] = NB101_EXAMPLE[1], name: str | None = None) -> dict:
    """The NAS-Bench-101 network of the cell (adjacency ``matrix``, vertex ``ops``)."""
    rows = _check_nb101(matrix, ops)
    g = Graph(name or "nasbench101", "NAS-Bench-101 skeleton up to the last cell")
    x = g.conv("stem", 3, 1, "same")
    for stack in range(3):
        if stack:
            x = g.maxpool(f"downsample{stack}", 2, 2, "same", inputs=x)
        for cell in range(3):
            x = _nb101_cell(g, f"stack{stack}.cell{cell}", rows, ops, x)
    return g.spec(output=x)
