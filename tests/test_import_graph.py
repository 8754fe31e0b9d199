"""No two modules of Patron import each other, directly or round a loop.

Deferred imports (inside a function) count: they hide a loop from Python at start-up, not from
a reader, who still has to know both modules to change either. The migrations and the model
registry (`patron.schema`, which imports every package's tables for Alembic) count too: they
sit above every package, so `patron.db` imports none of them.

Packages are held to less for now: the pairs of packages that still import each other (through
different modules) are listed, and the list may only shrink.
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


# Package pairs that still import each other (the modules do not: see above). Each is a
# package holding both what another package needs and what needs that package, e.g. `rules`
# holds the rule engine the sale path reads and the what-if replay that runs sales. The list
# may only shrink: a new pair fails the test below.
KNOWN_TWO_WAY = {
    ("auth", "http"),  # the API keys' routes use the request helpers that check keys
    ("campaigns", "sales"),
    ("delivery", "webhooks"),
    ("fraud", "sales"),
    ("members", "notify"),
    ("milestones", "notify"),
    ("programs", "rules"),
    ("rewards", "sales"),
    ("rewards", "segments"),
    ("rules", "sales"),
    ("rules", "segments"),
}


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


def test_no_new_pair_of_packages_imports_each_other() -> None:
    pairs = two_way_packages(import_graph())
    assert pairs <= KNOWN_TWO_WAY, f"packages that now import each other: {pairs - KNOWN_TWO_WAY}"
    assert ("members", "sales") not in pairs  # patron.moves holds what needs both
