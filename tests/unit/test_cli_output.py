"""`framecast generate` checks where the video goes before it loads an engine or renders."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from framecast.cli.main import app

SAMPLE = Path(__file__).parents[2] / "src/framecast/assets/sample.jpg"


@pytest.fixture(autouse=True)
def no_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import framecast.engines.selection as selection

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the engine was loaded before the output path was checked")

    monkeypatch.setattr(selection, "load_engine", refuse)
    monkeypatch.setenv("FRAMECAST_DATA_DIR", str(tmp_path / "data"))


def generate(output: Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["generate", str(SAMPLE), "--prompt", "p", "--engine", "preview", "-o", str(output)]
    )
    return result.exit_code, result.stderr


def test_a_missing_folder_fails_at_once_in_one_line(tmp_path: Path) -> None:
    code, stderr = generate(tmp_path / "missing-folder" / "out.mp4")
    assert code == 2
    assert stderr.splitlines() == [
        f"error: the folder {tmp_path / 'missing-folder'} does not exist; create it, or give -o "
        "a path in an existing folder"
    ]


def test_a_folder_as_the_output_fails_at_once(tmp_path: Path) -> None:
    code, stderr = generate(tmp_path)
    assert code == 2
    assert stderr.strip() == (
        f"error: --output {tmp_path} is a folder; give a file name, e.g. {tmp_path / 'out.mp4'}"
    )


def test_a_file_in_place_of_the_folder_fails_at_once(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    code, stderr = generate(tmp_path / "notes.txt" / "out.mp4")
    assert code == 2
    assert "notes.txt is a file, not a folder" in stderr
