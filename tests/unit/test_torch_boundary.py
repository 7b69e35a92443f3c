"""Only the engines of the real models (engines/hunyuan/, engines/hunyuan15/) and the process
group of a multi-GPU worker (parallel/, which is torch.distributed) import torch: the API, the
worker's plumbing, the model declarations and the CLI start fast and run on machines without it."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).parents[2] / "src" / "framecast"
HEAVY = {"torch", "diffusers", "transformers", "accelerate"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_module_outside_the_model_engines_imports_torch() -> None:
    engines = {("engines", "hunyuan"), ("engines", "hunyuan15")}
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.relative_to(SRC).parts[:2] not in engines
        and p.relative_to(SRC).parts[0] != "parallel"
        and _imports(p) & HEAVY
    ]
    assert offenders == []


def test_starting_the_api_worker_and_cli_does_not_load_torch() -> None:
    code = (
        "import sys\n"
        "import framecast.api.app, framecast.worker.loop, framecast.cli.main, framecast.engines\n"
        "import framecast.engines.hunyuan, framecast.engines.hunyuan.weights\n"
        "import framecast.engines.hunyuan15.loader, framecast.engines.hunyuan15.weights\n"
        "import framecast.engines.selection, framecast.models\n"
        "framecast.models.builtin_models()\n"
        "from framecast.api.app import create_app\n"
        f"print(sorted(m for m in {sorted(HEAVY)!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_attention_kernel_not_installed_stops_both_engines_before_torch_loads() -> None:
    if importlib.util.find_spec("flash_attn_interface") is not None:
        pytest.skip("FlashAttention-3 is installed here")
    code = (
        "import sys\n"
        "from framecast.engines.base import EngineNeedsSetup\n"
        "from framecast.engines.hunyuan import loader\n"
        "from framecast.engines.hunyuan15 import loader as loader15\n"
        "from framecast.settings import Settings\n"
        "settings = Settings(attention='flash-attn-3', hunyuan_model='tiny-random')\n"
        "for load in (loader.load, loader15.load):\n"
        "    try:\n"
        "        load(settings)\n"
        "    except EngineNeedsSetup as exc:\n"
        "        print(exc.message)\n"
        f"print(sorted(m for m in {sorted(HEAVY)!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    *refusals, heavy = out.stdout.strip().splitlines()
    assert len(refusals) == 2
    for line in refusals:
        assert line.startswith("FRAMECAST_ATTENTION=flash-attn-3 needs the Python module ")
        assert "FRAMECAST_ATTENTION=auto" in line
    assert heavy == "[]"
