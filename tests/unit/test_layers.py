"""The package's layers, held: imports point down, never up or round in a circle.

The README's Architecture section draws the same layers. Every import counts, whether at the top
of a module, inside a function or under ``TYPE_CHECKING``: each says which way a dependency runs.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).parents[2] / "src" / "framecast"

LAYERS: list[set[str]] = [
    {"__main__"},
    {"cli"},
    {"api", "worker"},
    {"webhooks"},
    {"admission"},
    {"queue"},
    {"storage"},
    {"client"},
    {"engines"},
    {"parallel"},
    {"models"},
    {"db"},
    {"startup"},
    {"settings"},
    {
        "__init__",
        "contract",
        "states",
        "rates",
        "errors",
        "sizes",
        "images",
        "logs",
        "video",
        "fetch",
    },
]
"""Top first. A module may import its own package and anything in a lower layer. Two packages
in one layer do not import each other (the API never imports the worker nor the worker the API),
except in the bottom layer of shared modules, which import one another freely (without a
cycle)."""

SHARED = LAYERS[-1]
NOT_CODE = {"migrations", "playground", "assets"}


def _unit(module: str) -> str:
    """``framecast.queue.jobs`` -> ``queue``; ``framecast.settings`` -> ``settings``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(unit: str) -> int:
    for index, layer in enumerate(LAYERS):
        if unit in layer:
            return index
    raise AssertionError(f"framecast.{unit} is in no layer: add it to LAYERS (and the README)")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(p): p for p in SRC.rglob("*.py") if p.relative_to(SRC).parts[0] not in NOT_CODE
    }


def _imports(path: Path, known: set[str]) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if not node.module.startswith("framecast"):
                continue
            for alias in node.names:
                # `from framecast.queue import jobs` imports the module framecast.queue.jobs.
                child = f"{node.module}.{alias.name}"
                yield child if child in known else node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("framecast"))


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {
        name: {dep for dep in _imports(path, known) if dep in known and dep != name}
        for name, path in modules.items()
    }


def test_every_import_points_down_the_layers() -> None:
    upward = []
    for module, deps in _graph().items():
        unit = _unit(module)
        for dep in deps:
            target = _unit(dep)
            if target == unit or (unit in SHARED and target in SHARED):
                continue
            if _layer(target) <= _layer(unit):
                upward.append(f"{module} -> {dep}")
    assert sorted(upward) == []


def test_no_import_cycle() -> None:
    graph = _graph()
    cycles: list[list[str]] = []
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in graph[node]:
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert cycles == []


def test_the_top_of_the_package_keeps_only_shared_modules() -> None:
    top = sorted(p.stem for p in SRC.glob("*.py"))
    assert len(top) <= 16, top
    assert set(top) <= SHARED | {"__main__", "settings", "startup", "db"}


def test_the_layer_check_sees_an_upward_import(tmp_path: Path) -> None:
    # The check itself: an import from the queue up into the API is reported.
    fake = tmp_path / "jobs.py"
    fake.write_text("from framecast.api.views import status_body\n")
    deps = set(_imports(fake, {"framecast.api.views"}))
    assert deps == {"framecast.api.views"}
    assert _layer(_unit("framecast.api.views")) < _layer(_unit("framecast.queue.jobs"))
