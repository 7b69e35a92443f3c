"""The wire format's place among the layers: :mod:`framecast.contract` depends on nothing of
the server (the client imports it, and stays light), and the layers below the API (queue,
webhooks, worker) never import it: the worker runs no view code of the API's."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).parents[2] / "src" / "framecast"
SERVER = ("sqlalchemy", "fastapi", "starlette", "framecast.api", "framecast.queue", "framecast.db")


def _imports(path: Path) -> set[str]:
    """The absolute module names ``path`` imports (relative imports resolved)."""
    package = ".".join(("framecast", *path.relative_to(SRC).parent.parts))
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            names.add(f"{base}.{node.module}" if base else node.module)
    return names


def _importers(folders: tuple[str, ...], prefix: str) -> list[str]:
    return [
        f"{p.relative_to(SRC)}: {name}"
        for folder in folders
        for p in sorted((SRC / folder).rglob("*.py"))
        for name in sorted(_imports(p))
        if name == prefix or name.startswith(prefix + ".")
    ]


def test_the_layers_below_the_api_never_import_it() -> None:
    assert (
        _importers(("queue", "webhooks", "worker", "storage", "admission"), "framecast.api") == []
    )


def test_the_contract_imports_only_pydantic_and_itself() -> None:
    framecast = [
        name
        for p in (SRC / "contract").rglob("*.py")
        for name in _imports(p)
        if name.startswith("framecast") and not name.startswith("framecast.contract")
    ]
    third_party = {
        name.split(".")[0]
        for p in (SRC / "contract").rglob("*.py")
        for name in _imports(p)
        if name.split(".")[0] not in sys.stdlib_module_names and not name.startswith("framecast")
    }
    assert framecast == [] and third_party == {"pydantic"}


def test_the_client_loads_none_of_the_server() -> None:
    code = f"import sys, framecast.client\nprint([m for m in {SERVER!r} if m in sys.modules])\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
