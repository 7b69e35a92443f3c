from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from framecast.settings import Settings

README = (Path(__file__).parents[2] / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_documented_in_the_readme(name: str) -> None:
    assert f"`FRAMECAST_{name.upper()}`" in README


def test_environment_is_read_at_construction(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FRAMECAST_API_KEYS", " a, b ,,c ")
    monkeypatch.setenv("FRAMECAST_PORT", "9001")
    monkeypatch.setenv("FRAMECAST_DATA_DIR", str(tmp_path))
    s = Settings()
    assert s.api_keys == ["a", "b", "c"] and s.port == 9001
    assert s.resolved_database_url == f"sqlite:///{tmp_path.resolve() / 'framecast.db'}"


def test_generated_secret_is_kept_across_restarts(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path).signing_key()
    assert first == Settings(data_dir=tmp_path).signing_key()
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    assert Settings(data_dir=tmp_path, secret_key="given").signing_key() == b"given"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("3600", 3600), ("90m", 5400), ("24h", 86400), ("7d", 604800), ("1.5h", 5400)],
)
def test_retention_takes_durations(value: str, seconds: int) -> None:
    assert Settings(retention=value).retention == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("value", ["0", "7 weeks", "-1d", "soon"])
def test_retention_refuses_what_is_not_a_duration(value: str) -> None:
    with pytest.raises(ValueError, match=r"duration|more than zero"):
        Settings(retention=value)


@pytest.mark.parametrize(("cores", "threads"), [(1, 1), (2, 1), (4, 2), (64, 2)])
def test_decode_threads_leave_a_small_machine_a_core_for_the_event_loop(
    monkeypatch: pytest.MonkeyPatch, cores: int, threads: int
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    monkeypatch.delenv("FRAMECAST_DECODE_CONCURRENCY", raising=False)
    assert Settings().decode_concurrency == threads
    monkeypatch.setenv("FRAMECAST_DECODE_CONCURRENCY", "3")
    assert Settings().decode_concurrency == 3
