"""The layout: layers import only downward, and no module imports itself through others."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "src" / "regspeed"
LAYERS = ("envs", "learn", "study", "analysis", "report", "cli")  # bottom to top


def imports(path: Path) -> list[str]:
    """Every ``regspeed`` module a file imports, at the top or inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names]  # `from package import module`
    return [name for name in found if name.startswith("regspeed")]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_layers_import_only_from_their_own_layer_or_below() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        layer = path.relative_to(PACKAGE).parts[0]
        if layer not in LAYERS:
            continue
        above = {f"regspeed.{name}" for name in LAYERS[LAYERS.index(layer) + 1 :]}
        layer_of = lambda module: ".".join(module.split(".")[:2])  # noqa: E731
        upward += [f"{path.relative_to(PACKAGE)} imports {name}" for name in imports(path) if layer_of(name) in above]
    assert not upward, upward


def test_no_import_cycles_between_modules() -> None:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {name: {m for m in imports(path) if m in modules and m != name} for name, path in modules.items()}
    graph = {name: {m for m in targets if not name.startswith(m + ".")} for name, targets in graph.items()}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        assert name not in visiting, " -> ".join([*visiting[visiting.index(name) :], name])
        if name in done:
            return
        visiting.append(name)
        for target in sorted(graph[name]):
            visit(target)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
