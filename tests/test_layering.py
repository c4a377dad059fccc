"""The modules of colorot form layers: no import cycle among them, function-level imports included.

Each ``colorot/*.py`` is parsed with :mod:`ast` (nothing is imported); every ``import`` anywhere in
it, inside functions and ``TYPE_CHECKING`` blocks too, is an edge to the colorot module it names.
``from colorot import name`` names the module ``name`` when there is one, else the package itself
(``colorot/__init__.py``). docs/architecture.md states the layers, and each module's imports, that this
test keeps.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "colorot"
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"
INIT = "__init__"



def modules() -> list[str]:
    """The module names of the package: ``apply``, ``cli``, … and ``__init__``."""
    return sorted(path.stem for path in PACKAGE.glob("*.py"))


def imported(module: str, names: set[str]) -> set[str]:
    """The colorot modules that ``module`` imports anywhere in its source."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {_target(alias.name.split(".")[1:], names) for alias in node.names
                      if alias.name.split(".")[0] == "colorot"}
        elif isinstance(node, ast.ImportFrom):
            found |= _from_targets(node, names)
    found.discard(None)
    found.discard(module)
    return found


def _from_targets(node: ast.ImportFrom, names: set[str]) -> set[str | None]:
    """The modules a ``from … import …`` names (absolute or relative to the package)."""
    parts = (node.module or "").split(".") if node.module else []
    if node.level == 0:
        if not parts or parts[0] != "colorot":
            return set()
        parts = parts[1:]
    if parts:
        return {_target(parts, names)}
    return {alias.name if alias.name in names else INIT for alias in node.names}


def _target(parts: list[str], names: set[str]) -> str | None:
    """``colorot.<parts>``'s module, or the package itself for ``colorot``."""
    if not parts:
        return INIT
    return parts[0] if parts[0] in names else None


def import_graph() -> dict[str, set[str]]:
    names = set(modules())
    return {module: imported(module, names) for module in names}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for child in sorted(graph[node]):
            if state.get(child) == 1:
                return path[path.index(child):] + [child]
            if child not in state and (cycle := visit(child)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_graph_sees_function_level_imports() -> None:
    graph = import_graph()
    assert "transforms" in graph["apply"]  # imported inside prepare() only
    assert "transfer" in graph[INIT]  # imported inside __getattr__ only


def test_colorot_modules_import_without_cycles() -> None:
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_a_cycle_is_found() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def documented_layers() -> dict[str, tuple[int, str]]:
    """docs/architecture.md's table: module → (layer, its "imports from colorot" cell)."""
    rows = {}
    for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines():
        row = re.fullmatch(r"\| (\d+) \| `(\w+)` \| .* \| (.+) \|", line)
        if row:
            rows[row.group(2)] = (int(row.group(1)), row.group(3))
    return rows


def test_the_architecture_table_gives_each_module_its_layer_and_its_imports() -> None:
    graph, rows = import_graph(), documented_layers()
    assert sorted(rows) == sorted(graph)
    for module, imports in graph.items():
        layer, cell = rows[module]
        if cell != "any module":  # the CLI's row
            listed = set() if cell == "–" else {name.split(" (")[0] for name in cell.split(", ")}
            assert listed == imports, f"{module}: the table lists {sorted(listed)}, the code imports {sorted(imports)}"
        lower = sorted(name for name in imports if rows[name][0] >= layer)
        assert not lower, f"{module} (layer {layer}) imports {lower}, not of a lower layer"

