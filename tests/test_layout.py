"""The package layout: the library never needs the benchmark, and no module imports in a cycle.

Read from the source with :mod:`ast` (nothing is imported), so the checks see what a fresh
``pip install dashsel`` would run: module-level imports only; imports inside functions are
the lazy ones and may name optional dependencies.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGES = ("dashsel", "dashsel_bench")
#: Never imported at module level by the library: the benchmark and every optional extra.
OPTIONAL = (
    "dashsel_bench",
    "matplotlib",
    "skimage",
    "mlxtend",
    "PIL",
    "torch",
    "ray",
    "optuna",
    "pydvl",
    "mabwiser",
    "pyarrow",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(package: str) -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / package).rglob("*.py"))}


def top_level_imports(path: Path, name: str) -> list[tuple[str, int]]:
    """(imported module, line) of every import executed when the module is imported.

    Walks module-level statements and the bodies of module-level ``if``/``try``/``with``
    blocks, skipping ``if TYPE_CHECKING:`` (never run); not function or class bodies.
    ``from a import b`` yields ``a.b`` too, since ``b`` may be a submodule.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[tuple[str, int]] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                out.extend((alias.name, node.lineno) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                out.append((base, node.lineno))
                out.extend((f"{base}.{alias.name}", node.lineno) for alias in node.names)
            elif isinstance(node, ast.If):
                test = ast.unparse(node.test)
                if "TYPE_CHECKING" not in test:
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, ast.With):
                visit(node.body)

    visit(tree.body)
    return out


def test_the_packages_are_found() -> None:
    assert "dashsel.cli" in modules("dashsel")
    assert "dashsel_bench.runner" in modules("dashsel_bench")
    assert not (SRC / "dashsel" / "bench").exists()  # the benchmark lives beside the library


#: Adapter modules whose whole purpose is one optional library: a user opts in by importing
#: them, and they call ``dashsel.errors.require`` (the one-line install hint) before it.
ADAPTERS: dict[str, str] = {
    "dashsel.integrations.optuna": "optuna",
    "dashsel.integrations.ray_tune": "ray",
}


@pytest.mark.parametrize("name", sorted(modules("dashsel")))
def test_library_imports_no_benchmark_or_optional_dependency(name: str) -> None:
    path = modules("dashsel")[name]
    allowed = ADAPTERS.get(name)
    bad = [
        f"{path.relative_to(SRC)}:{line} imports {mod}"
        for mod, line in top_level_imports(path, name)
        if mod.split(".")[0] in OPTIONAL and mod.split(".")[0] != allowed
    ]
    assert not bad, "; ".join(bad)
    if allowed:  # the hint comes before the library's own ImportError could
        source = path.read_text()
        first_import = re.search(rf"^(from|import) {allowed}\b", source, flags=re.M)
        assert first_import and source.index("require(") < first_import.start()


def import_graph() -> dict[str, set[str]]:
    """Module -> project modules it imports at module level (a package's import of
    ``pkg.sub`` also runs ``pkg/__init__``, so parents count too)."""
    known = {**modules("dashsel"), **modules("dashsel_bench")}
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        deps: set[str] = set()
        for mod, _ in top_level_imports(path, name):
            parts = mod.split(".")
            for i in range(1, len(parts) + 1):
                target = ".".join(parts[:i])
                if target in known and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules, or None (iterative DFS with colours)."""
    colour = dict.fromkeys(graph, 0)  # 0 new, 1 on the stack, 2 done
    for start in sorted(graph):
        if colour[start]:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour[child] == 1:
                # A package importing its own submodule is not a cycle Python trips on when the
                # submodule does not import the package back; but any loop through two or more
                # modules is reported.
                return [*path[path.index(child) :], child]
            elif colour[child] == 0:
                colour[child] = 1
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
    return None


def test_find_cycle_sees_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle() -> None:
    graph = import_graph()
    # Importing `pkg.sub` runs `pkg/__init__` first; an `__init__` that imports its own
    # submodules is the normal way to build a package, so edges from a package to its own
    # submodules are left out; anything else that loops is a cycle.
    for name, deps in graph.items():
        graph[name] = {d for d in deps if not (name and d.startswith(name + "."))}
        graph[name] = {d for d in graph[name] if not name.startswith(d + ".")}
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_benchmark_imports_no_private_name() -> None:
    bad = []
    for name, path in modules("dashsel_bench").items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.name.startswith("_") and alias.name != "__future__":
                        bad.append(f"{name}:{node.lineno} imports {alias.name}")
    assert not bad, "; ".join(bad)
