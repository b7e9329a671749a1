"""The installed package's import graph: no cycles, no module only tests use, no test code."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
INSTALLED = ("fleet", "ota", "tools")  # pyproject's [tool.setuptools.packages.find]
# Modules that nothing imports because something outside Python loads them by name.
ENTRY_POINTS = {
    "tools.cli.main": "the `lamplighter` console script (pyproject [project.scripts])",
    "fleet.app": "the ASGI app that `lamplighter server run` hands to uvicorn by name",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def installed_modules() -> dict[str, Path]:
    """Every module of the installed packages (Alembic's migrations are loaded as files)."""
    return {module_name(p): p for pkg in INSTALLED for p in sorted((REPO / pkg).rglob("*.py"))
            if "migrations" not in p.parts}


def imported_names(path: Path, name: str) -> set[str]:
    """Dotted names a module imports, at any level (a lazy import inside a function counts)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the installed modules it imports (a name resolves to its longest module)."""
    modules = installed_modules()

    def resolve(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    graph = {}
    for name, path in modules.items():
        targets = {resolve(d) for d in imported_names(path, name)}
        graph[name] = {t for t in targets if t and t != name and not name.startswith(t + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_installed_package_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_every_installed_module_is_used_by_the_installed_package():
    graph = import_graph()
    modules = installed_modules()
    used = set().union(*graph.values())
    packages = {m for m, p in modules.items() if p.name == "__init__.py"}
    unused = sorted(set(modules) - used - packages - set(ENTRY_POINTS))
    assert unused == [], f"imported only by tests or by nothing: {unused}"


def test_installed_code_never_imports_the_test_tree():
    leaks = sorted(f"{m} imports {d}" for m, p in installed_modules().items()
                   for d in imported_names(p, m)
                   if d.split(".")[0] in ("tests", "hil_tests", "bench"))
    assert leaks == []


def test_a_cycle_and_an_unused_module_would_be_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
