"""The suite's own promise: a test that sets a FRAMECAST_* variable (as a CLI run does) leaves
nothing behind for the tests after it (tests/conftest.py's ``_framecast_environment``)."""

from __future__ import annotations

import os

from framecast.settings import get_settings

LEAK = "FRAMECAST_DATA_DIR"


def test_a_test_that_sets_a_variable(tmp_path: object) -> None:
    os.environ[LEAK] = f"{tmp_path}/leaked"
    assert str(get_settings().data_dir).endswith("leaked")


def test_the_next_test_does_not_see_it() -> None:
    # Runs after the one above (pytest keeps a file's order, xdist keeps a file in one process).
    assert not os.environ.get(LEAK, "").endswith("leaked")
    assert not str(get_settings().data_dir).endswith("leaked")
