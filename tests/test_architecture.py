"""The shape of the package: no import cycles among rfsearch's modules, small modules and
functions, and package ``__init__`` files that only re-export.

Read from the source with ``ast`` (nothing is imported): every ``import`` and
``from ... import`` anywhere in a module counts, inside functions too; relative imports
are resolved against the importing module. ``importlib.import_module`` calls (the
space registry's) are not seen.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rfsearch"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, Path]:
    """rfsearch's modules: dotted name -> file."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def relative(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def import_edges(name: str, path: Path, modules: set[str]) -> set[str]:
    """The rfsearch modules that importing ``name`` imports (its own packages aside:
    they are already being imported when it runs)."""
    package = name if is_package(path) else name.rpartition(".")[0]
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    edges: set[str] = set()

    def add(target: str) -> None:
        """``target`` and the packages above it that are not ours to skip."""
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in modules and prefix not in ancestors and prefix != name:
                edges.add(prefix)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source not in modules:
                continue
            add(source)
            for alias in node.names:
                if f"{source}.{alias.name}" in modules:
                    add(f"{source}.{alias.name}")
                elif source in ancestors:  # a name defined by our own package's __init__
                    edges.add(source)
    return edges


def import_graph() -> dict[str, set[str]]:
    files = sources()
    return {name: import_edges(name, path, set(files)) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as [a, b, ..., a], or None when it is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"x"}}) == ["x", "x"]


def test_the_import_graph_sees_relative_and_function_level_imports():
    graph = import_graph()
    assert "rfsearch.evaluate" in graph["rfsearch"]  # from .evaluate import evaluate
    assert "rfsearch.plot" in graph["rfsearch.cli"]  # inside cmd_plot
    assert {"rfsearch.search", "rfsearch.search.runner"} <= graph["rfsearch.cli"]
    assert "rfsearch.zoo.nas" in graph["rfsearch.spaces.nasbench101"]  # inside a function
    assert "rfsearch.errors" in graph["rfsearch.search.manifest"]  # from ..errors import
    assert "rfsearch.search.runner" in graph["rfsearch.search"]


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def function_lengths() -> dict[str, int]:
    """'rfsearch/file.py::name' (nested and methods too) -> lines from ``def`` to its end."""
    out = {}
    for path in sources().values():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                key = f"{relative(path)}::{node.name}"
                out[key] = max(out.get(key, 0), node.end_lineno - node.lineno + 1)
    return out


def module_lengths() -> dict[str, int]:
    return {relative(p): len(p.read_text().splitlines()) for p in sources().values()}


def test_modules_fit_in_400_lines():
    long = {k: n for k, n in module_lengths().items()
            if n > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_functions_fit_in_60_lines():
    lengths = function_lengths()
    assert len(lengths) > 300  # every module was read
    long = {k: n for k, n in lengths.items()
            if n > MAX_FUNCTION_LINES}
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


@pytest.mark.parametrize("package", ["rfsearch", "rfsearch.search", "rfsearch.spaces",
                                     "rfsearch.zoo"])
def test_package_init_only_re_exports(package):
    path = sources()[package]
    tree = ast.parse(path.read_text(), str(path))
    defined = [f"{type(n).__name__} at line {n.lineno}" for n in ast.walk(tree)
               if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
                             | ast.Lambda)]
    assert not defined, f"{relative(path)} defines code: {defined}"
    imported = {alias.asname or alias.name for n in tree.body
                if isinstance(n, ast.ImportFrom) for alias in n.names}
    exported = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                    and any(getattr(t, "id", None) == "__all__" for t in n.targets))
    assert set(exported) - imported <= {"__version__"}
