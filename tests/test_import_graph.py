"""No two modules of Patron, and no two of its packages, import each other, directly or round a
loop.

Deferred imports (inside a function) count: they hide a loop from Python at start-up, not from
a reader, who still has to know both modules to change either. The migrations and the model
registry (`patron.schema`, which imports every package's tables for Alembic) count too: they
sit above every package, so `patron.db` imports none of them.

Packages are held to the same: no two packages import each other, directly or round a loop,
through whichever of their modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
LEFT_OUT: tuple[str, ...] = ()


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module → the Patron modules it imports, anywhere in its text."""
    paths = {module_name(p): p for p in (SRC / "patron").rglob("*.py")}
    modules = {name: p for name, p in paths.items() if not name.startswith(LEFT_OUT)}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                named = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from patron.rules import service` names the module patron.rules.service
                named = [
                    f"{node.module}.{alias.name}"
                    if f"{node.module}.{alias.name}" in modules
                    else node.module
                    for alias in node.names
                ]
            else:
                continue
            graph[name].update(t for t in named if t in modules and t != name)
    return graph


def loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected sets of two or more modules (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))
    return found


def package(module: str) -> str:
    """patron.rules.service -> rules; a module at the top (patron.cli) is its own package."""
    return module.split(".")[1] if module.count(".") else module


def two_way_packages(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """Pairs of packages each of which imports the other somewhere."""
    edges = {(package(a), package(b)) for a, targets in graph.items() for b in targets}
    return {(a, b) for a, b in edges if a < b and (b, a) in edges}


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Package -> the packages its modules import (a package never counts as importing itself)."""
    packages: dict[str, set[str]] = {package(m): set() for m in graph}
    for a, targets in graph.items():
        packages[package(a)].update(package(b) for b in targets if package(b) != package(a))
    return packages


def test_the_loop_finder_finds_a_loop_through_a_deferred_import() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert loops(graph) == [["a", "b", "c"]]
    assert loops({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_imports_inside_functions() -> None:
    graph = import_graph()
    # rules.publishing imports rules.confirm at the top; the sale path reads rules.service.
    assert "patron.rules.confirm" in graph["patron.rules.publishing"]
    assert "patron.rules.service" in graph["patron.sales.plan"]
    # tiers.jobs imports programs.service inside `evaluate`: an edge all the same.
    assert "patron.programs.service" in graph["patron.tiers.jobs"]


def test_no_modules_import_each_other() -> None:
    found = loops(import_graph())
    # To break a loop, move what both sides need into a module below both.
    assert found == [], "modules that import each other: " + "; ".join(map(", ".join, found))


def test_no_packages_import_each_other() -> None:
    graph = import_graph()
    found = loops(package_graph(graph))
    # A package holding both what the sale path calls and staff operations that move points
    # through it splits in two: below the sale path (patron.coupons, patron.experiments,
    # patron.fraud) and above it (patron.rewards, patron.campaigns, patron.review).
    assert found == [], "packages that import each other: " + "; ".join(map(", ".join, found))
    assert two_way_packages(graph) == set()
    # patron.db (engines, units of work, column types) is below every package: the migrations
    # and the model registry (patron.schema) that import them all sit above.
    assert package_graph(graph)["db"] <= {"clock", "config", "errors"}


def test_the_package_loop_finder_sees_a_loop_through_three_packages() -> None:
    graph = {
        "patron.a.x": {"patron.b.y"},
        "patron.b.y": {"patron.c.z"},
        "patron.c.z": {"patron.a.w"},
        "patron.a.w": set(),
    }
    assert loops(package_graph(graph)) == [["a", "b", "c"]]
    assert two_way_packages(graph) == set()  # no pair, yet a loop
