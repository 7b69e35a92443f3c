"""Start-up as a new user meets it: the data folder is the same from any working directory, and
what cannot work (a taken port, a folder that cannot be written, an engine that cannot load)
is one line saying what to change and an exit code, not a traceback or a crash loop."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from framecast.api.app import create_app
from framecast.cli.main import app as cli
from framecast.queue.registry import WorkerState
from framecast.settings import PROJECT_DATA_DIR, Settings
from framecast.startup import EXIT_CONFIG, EXIT_ENGINE_UNAVAILABLE

from .conftest import Server

# A model directory that is not there: the hunyuan engine cannot load, GPU or not.
NO_WEIGHTS = {
    "FRAMECAST_ENGINE": "hunyuan",
    "FRAMECAST_HUNYUAN_MODEL": "/nonexistent/hunyuan-weights",
    "FRAMECAST_HUNYUAN15_MODEL": "/nonexistent/hunyuan15-weights",
}


def framecast(
    *args: str, env: dict[str, str], cwd: Path | None = None, prefix: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FRAMECAST_")}
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "framecast", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in last, last
    return last


def test_keys_list_finds_the_same_database_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No FRAMECAST_DATA_DIR: the user's data folder (XDG_DATA_HOME here), not the working
    directory, holds the database."""
    monkeypatch.delenv("FRAMECAST_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    runner = CliRunner()
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()

    monkeypatch.chdir(first)
    created = runner.invoke(cli, ["keys", "create", "--name", "laptop"])
    assert created.exit_code == 0, created.output
    monkeypatch.chdir(second)
    listed = runner.invoke(cli, ["keys", "list"])
    assert listed.exit_code == 0, listed.output

    assert "laptop" in listed.output
    assert (tmp_path / "xdg" / "framecast" / "framecast.db").is_file()
    assert not any(first.iterdir()) and not any(second.iterdir())


def test_the_cli_run_from_the_project_finds_make_runs_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make run` keeps its data in ./framecast-data (FRAMECAST_DATA_DIR, from the Makefile);
    a command run from that folder with no FRAMECAST_DATA_DIR finds it, and one run elsewhere
    that only reads says where it looked instead of making an empty database there."""
    makefile = (Path(__file__).parents[2] / "Makefile").read_text()
    assert f"$(CURDIR)/{PROJECT_DATA_DIR}" in makefile  # the folder the CLI looks for
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    runner = CliRunner()

    monkeypatch.setenv("FRAMECAST_DATA_DIR", str(project / PROJECT_DATA_DIR))  # as make run
    created = runner.invoke(cli, ["keys", "create", "--name", "from-make-run"])
    assert created.exit_code == 0, created.output
    monkeypatch.delenv("FRAMECAST_DATA_DIR")
    monkeypatch.chdir(project)
    listed = runner.invoke(cli, ["keys", "list"])
    assert listed.exit_code == 0 and "from-make-run" in listed.stdout, listed.output

    monkeypatch.chdir(elsewhere)
    for command in (["keys", "list"], ["webhooks", "list"]):
        missing = runner.invoke(cli, command)
        assert missing.exit_code == EXIT_CONFIG, missing.output
        assert missing.stderr.startswith("error: no database yet at ")
        assert str(tmp_path / "xdg" / "framecast" / "framecast.db") in missing.stderr
        assert "make run" in missing.stderr and "framecast db upgrade" in missing.stderr
    assert not (tmp_path / "xdg").exists() and not any(elsewhere.iterdir())


@pytest.mark.parametrize("flags", [[], ["--dev"]], ids=["serve", "serve --dev"])
def test_serve_on_a_taken_port_says_which_setting_to_change(
    tmp_path: Path, flags: list[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = framecast(
            "serve",
            *flags,
            env={
                "FRAMECAST_DATA_DIR": str(tmp_path / "data"),
                "FRAMECAST_PORT": str(port),
                "FRAMECAST_WORKERS": "1",
            },
        )
    assert_one_line_error(proc, EXIT_CONFIG, f"port {port}", "in use", "FRAMECAST_PORT")
    assert proc.stdout == ""  # the port is checked before the --dev banner is printed


def read_only(folder: Path) -> list[str]:
    """A command prefix under which ``folder`` cannot be written. Root writes through permission
    bits, so for root the folder is bind-mounted read-only in a mount namespace of its own."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return []
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is needed to make a read-only folder as root"
    script = (
        f'mount --bind "{folder}" "{folder}" && mount -o remount,ro,bind "{folder}" && exec "$@"'
    )
    return [unshare, "--mount", "sh", "-c", script, "sh"]


@pytest.mark.parametrize("flags", [[], ["--dev"]], ids=["serve", "serve --dev"])
def test_serve_with_a_read_only_data_folder_says_what_to_do(
    tmp_path: Path, flags: list[str]
) -> None:
    data = tmp_path / "data"
    proc = framecast(
        "serve",
        *flags,
        env={"FRAMECAST_DATA_DIR": str(data), "FRAMECAST_PORT": "0"},
        prefix=read_only(data),
    )
    assert_one_line_error(proc, EXIT_CONFIG, str(data), "cannot be written", "FRAMECAST_DATA_DIR")


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (["keys", "create"], "cannot be written"),
        (["db", "upgrade"], "cannot be written"),
        # Only read: no lock to take, so nothing is written; there is no database to read.
        (["keys", "list"], "no database yet"),
        (["webhooks", "list"], "no database yet"),
    ],
    ids=lambda part: " ".join(part) if isinstance(part, list) else "",
)
def test_commands_with_a_read_only_data_folder_say_what_to_do(
    tmp_path: Path, command: list[str], says: str
) -> None:
    data = tmp_path / "data"
    proc = framecast(*command, env={"FRAMECAST_DATA_DIR": str(data)}, prefix=read_only(data))
    assert_one_line_error(proc, EXIT_CONFIG, str(data), says)


def test_a_read_only_command_on_an_unusable_database_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"FRAMECAST_DATA_DIR": str(data)}
    assert framecast("db", "upgrade", env=env).returncode == 0
    (data / "framecast.db").write_bytes(b"not a database")
    assert_one_line_error(
        framecast("keys", "list", env=env), EXIT_CONFIG, str(data / "framecast.db")
    )


LOCAL = ("127.0.0.1", 50000)
"""A TestClient's address on this machine (its default, "testclient", is no address)."""


def test_a_worker_that_cannot_load_its_engine_retries_then_stops_and_readyz_says_why(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    started = time.monotonic()
    proc = framecast(
        "worker",
        env={
            **NO_WEIGHTS,
            "FRAMECAST_DATA_DIR": str(data),
            "FRAMECAST_ENGINE_LOAD_ATTEMPTS": "3",
            "FRAMECAST_ENGINE_LOAD_BACKOFF_SECONDS": "0.2",
        },
    )
    last = assert_one_line_error(
        proc, EXIT_ENGINE_UNAVAILABLE, "after 3 tries", "/nonexistent/hunyuan-weights"
    )
    assert time.monotonic() - started >= 0.2 + 0.4  # backed off between tries
    retries = [line for line in proc.stderr.splitlines() if "loading the engine failed" in line]
    assert len(retries) == 2 and "try 1 of 3" in retries[0] and "try 2 of 3" in retries[1]

    # From this machine: /readyz gives the reason only to local or keyed callers.
    with TestClient(create_app(Settings(data_dir=data)), client=LOCAL) as client:
        r = client.get("/readyz")
    assert r.status_code == 503
    message = r.json()["error"]["message"]
    assert "could not load its engine" in message and "framecast worker`" not in message
    assert last.removeprefix("error: ") in message


def test_serve_does_not_restart_a_worker_that_cannot_load_its_engine(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(
        **{k.removeprefix("FRAMECAST_").lower(): v for k, v in NO_WEIGHTS.items()},
        engine_load_attempts=1,
        workers=1,
    )
    server.start(wait_ready=False)
    deadline = time.monotonic() + 30
    with server.client(key=None) as client:
        while time.monotonic() < deadline:
            r = client.get("/readyz")
            if "could not load its engine" in r.text:
                break
            time.sleep(0.2)
        assert r.status_code == 503 and "could not load its engine" in r.text, r.text
        while "not restarting it" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.2)  # the pool looks at its workers once a second
        assert "not restarting it" in server.log(), server.log()
        assert client.get("/healthz").status_code == 200  # the API stays up
    assert server.log().count("error: the worker could not load its engine") == 1
    assert server.worker_pids() == []


@pytest.mark.parametrize(
    ("serves", "state"),
    [(None, "workers are still loading their engine"), ([], "no live worker serves")],
    ids=["planned", "not planned yet"],
)
def test_readyz_names_the_reason_of_a_worker_still_retrying_its_engine(
    tmp_path: Path, serves: list[str] | None, state: str
) -> None:
    """While it retries: with its models known (its load failed), or not even those (its plan
    failed, e.g. no weights for any model)."""
    with TestClient(create_app(Settings(data_dir=tmp_path / "data")), client=LOCAL) as client:
        registry = client.app.state.services.registry  # type: ignore[attr-defined]
        registry.register("gpu-1", "host", 1, serves=serves)
        retrying = "loading the engine failed (try 1 of 3): CUDA busy; trying again in 5 s"
        registry.beat("gpu-1", state=WorkerState.LOADING, reason=retrying)
        r = client.get("/readyz")
    assert r.status_code == 503
    message = r.json()["error"]["message"]
    assert message.startswith(state) and message.endswith(f"; gpu-1: {retrying}"), message
