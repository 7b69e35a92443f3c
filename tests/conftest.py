from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

from framecast.db import create_db_engine, migrate
from framecast.settings import get_settings

from .pg_schema import create_schema
from .sqlite_template import seed

PG_DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

# One torch thread per process: the suite runs a pytest worker per core, and torch's default of
# a thread per core in each of them (and in the servers and CLIs the tests start, which inherit
# this) oversubscribes the cores and about doubles the CPU time of the tiny-model tests. Set
# here, before anything imports torch, which reads it once at import.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _framecast_environment() -> Iterator[None]:
    """Each test starts from the FRAMECAST_* variables the session started with, and from
    settings read anew: a CLI run or a test that sets one cannot leak it into the next test."""
    before = {name: value for name, value in os.environ.items() if name.startswith("FRAMECAST_")}
    yield
    for name in [name for name in os.environ if name.startswith("FRAMECAST_")]:
        if name not in before:
            del os.environ[name]
    os.environ.update(before)
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def _root_logging() -> Iterator[None]:
    """A command run in-process configures the root logger (framecast.logs) with a handler on
    the stderr of its moment, which pytest closes after the test: put the root logger back as
    it was, so a later test's log line does not meet a closed stream."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="session")
def pg_url() -> str:
    """A PostgreSQL server for tests: FRAMECAST_TEST_DATABASE_URL, else the local default.

    Skipped, with the reason, only when the variable is unset and nothing answers; when it is
    set and the server does not answer, that is a failure (CI sets it).
    """
    url = os.environ.get("FRAMECAST_TEST_DATABASE_URL")
    try:
        engine = create_engine(url or PG_DEFAULT_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        if url:
            pytest.fail(f"FRAMECAST_TEST_DATABASE_URL={url} does not answer: {exc}")
        pytest.skip(
            f"no PostgreSQL at {PG_DEFAULT_URL} and FRAMECAST_TEST_DATABASE_URL is unset "
            f"({type(exc).__name__})"
        )
    return url or PG_DEFAULT_URL


@pytest.fixture
def pg_schema_url(pg_url: str) -> Iterator[str]:
    """A URL whose connections use a fresh, empty schema, dropped afterwards."""
    url, drop = create_schema(pg_url, "fc_test")
    yield url
    drop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database test runs on both backends."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return str(request.getfixturevalue("pg_schema_url"))


@pytest.fixture
def db(db_url: str) -> Iterator[Engine]:
    if db_url.startswith("sqlite:///"):  # migrated already (tests/sqlite_template.py)
        seed(Path(db_url.removeprefix("sqlite:///")))
    engine = create_db_engine(db_url)
    migrate(engine)
    yield engine
    engine.dispose()


# --- S3: a real moto server on loopback, one per session; a fresh bucket per test -------------

_AWS_ENV_TO_CLEAR = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_REGION",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    # The port is picked before moto binds it, so another process may win it: try a few.
    for _ in range(3):
        port = str(_free_port())
        endpoint = f"http://127.0.0.1:{port}"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", port],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        # One client for every poll: a new one builds an SSL context each time.
        with httpx.Client(timeout=1) as poller:
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    poller.get(endpoint)
                    return proc, endpoint
                except httpx.TransportError:
                    time.sleep(0.1)
        proc.kill()
        proc.wait()
    pytest.fail(f"moto server did not start; its log:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The endpoint URL of a moto S3 server running in its own process."""
    pytest.importorskip("moto.server")
    proc, endpoint = _start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield endpoint
    finally:
        # moto's server ignores SIGTERM (the suite waited 10 s on it) and keeps nothing that
        # needs flushing: kill it.
        proc.kill()
        proc.wait()


@pytest.fixture
def s3_bucket(
    s3_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, str]]:
    """``(endpoint_url, bucket)``: a new empty bucket, with the AWS environment pointing at it."""
    boto3 = pytest.importorskip("boto3")
    # Only these settings count: not the developer's ~/.aws, profiles, or the EC2 metadata service.
    for name in _AWS_ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"framecast-test-{uuid.uuid4().hex[:12]}"
    boto3.session.Session().client("s3").create_bucket(Bucket=bucket)
    yield s3_server, bucket
