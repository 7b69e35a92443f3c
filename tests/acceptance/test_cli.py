"""The `framecast` command as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import av
import httpx

from framecast.admission.keys import KeyStore
from framecast.db import create_db_engine
from framecast.settings import Settings

SAMPLE = Path(__file__).parents[2] / "src/framecast/assets/sample.jpg"


def _framecast(*args: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "FRAMECAST_DATA_DIR": str(data_dir), **env}
    return subprocess.run(
        [sys.executable, "-m", "framecast", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    created = _framecast(
        "keys", "create", "--name", "ci", "--max-active", "2", "--rate", "10/minute",
        data_dir=tmp_path,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    key_id = re.search(r"id:\s+(\S+)", created.stderr).group(1)  # type: ignore[union-attr]
    listed = _framecast("keys", "list", data_dir=tmp_path).stdout
    assert key_id in listed and "ci" in listed and "active" in listed
    assert "max-active 2, rate 10/minute" in listed  # its own limits
    assert secret not in listed
    assert _framecast("keys", "revoke", key_id, data_dir=tmp_path).returncode == 0
    assert "revoked" in _framecast("keys", "list", data_dir=tmp_path).stdout
    assert _framecast("keys", "revoke", key_id, data_dir=tmp_path).returncode == 1


def test_generate_writes_the_video_asked_for(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    run = _framecast(
        "generate",
        str(SAMPLE),
        "--prompt",
        "pan right",
        "-o",
        str(out),
        "--aspect-ratio",
        "9:16",
        "--num-frames",
        "33",
        "--engine",
        "preview",
        data_dir=tmp_path,
        # Full 720p size, but a fast preset and 33 frames: encoding 129 at "medium" took 6 s.
        FRAMECAST_X264_PRESET="ultrafast",
    )
    assert run.returncode == 0, run.stderr
    assert "engine preview" in run.stdout
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert (s.width, s.height) == (704, 1248)
        assert sum(1 for _ in c.decode(s)) == 33


def test_generate_rejects_bad_options_clearly(tmp_path: Path) -> None:
    run = _framecast(
        "generate", str(SAMPLE), "--prompt", "x", "--aspect-ratio", "4:3", data_dir=tmp_path
    )
    assert run.returncode == 2 and "aspect_ratio" in run.stderr


def test_dev_banner_prints_a_curl_example_that_works(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "FRAMECAST_DATA_DIR": str(tmp_path),
        "FRAMECAST_PORT": "0",  # the system's choice: the banner names the port bound
        "FRAMECAST_ENGINE": "preview",
        "FRAMECAST_API_KEYS": "",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "framecast", "serve", "--dev"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line)
            if "/result" in line:
                break
        banner = "".join(lines)
        key = re.search(r"development API key:\s+(\S+)", banner).group(1)  # type: ignore[union-attr]
        key_id = re.search(r"its key id:\s+(\S+)", banner).group(1)  # type: ignore[union-attr]
        signing = re.search(r"its webhook secret:\s+(whsec_\S+)", banner).group(1)  # type: ignore[union-attr]
        # The secret the server signs this key's webhook deliveries with, as printed.
        keys = KeyStore(create_db_engine(Settings(data_dir=tmp_path).resolved_database_url))
        assert keys.owner_for(key) == key_id
        assert keys.webhook_secrets(key_id) == (signing,)
        script = banner[banner.index("KEY=") : banner.index("then poll")]
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", script).group(1))  # type: ignore[union-attr]
        deadline = time.monotonic() + 30  # a hang guard
        with httpx.Client() as poller:  # one for every poll: each new one builds an SSL context
            while True:
                try:
                    if poller.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline
                time.sleep(0.1)
        out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
        body = httpx.Response(200, content=out.stdout).json()
        assert "request_id" in body, (body, banner)
        status = httpx.get(body["status_url"], headers={"Authorization": f"Bearer {key}"})
        assert status.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=40)
