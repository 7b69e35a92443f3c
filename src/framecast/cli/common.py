"""What every ``framecast`` subcommand shares: settings from flags, logging, common options, and
the database opened as the command needs it, with one-line errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from framecast.settings import Settings

DataDir = Annotated[Path | None, typer.Option(help="FRAMECAST_DATA_DIR", show_default=False)]


def settings_from_flags(**flags: Any) -> Settings:
    """Settings from the environment, with the flags given on the command line on top.

    Nothing is written back to the environment: the settings are passed to what runs here, and
    only code that starts processes (``serve``'s workers) hands them on, in those processes'
    environment.
    """
    return Settings(**{name: value for name, value in flags.items() if value is not None})


def configure_cli_logging(settings: Settings) -> None:
    from framecast.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def one_line_errors(settings: Settings) -> Iterator[None]:
    """What a user can fix (no database yet, a folder that cannot be written, a database that
    cannot be opened) ends the command as one line and exit code 2, not a traceback."""
    from sqlalchemy.exc import DatabaseError

    from framecast.db import DatabaseUnavailable, describe_database
    from framecast.startup import StartupError

    try:
        yield
    except (DatabaseUnavailable, StartupError) as exc:
        fail(exc.message)
    except DatabaseError as exc:  # no file, a locked or damaged one, no server
        where = describe_database(settings.resolved_database_url)
        fail(
            f"cannot use the database at {where} ({exc.orig}); check FRAMECAST_DATABASE_URL, or "
            "that this user can read and write FRAMECAST_DATA_DIR (--data-dir)"
        )


def _is_sqlite_file(settings: Settings) -> bool:
    from framecast.db import is_sqlite_url

    return is_sqlite_url(settings.resolved_database_url)


def read_database(settings: Settings) -> Any:
    """The database of a command that only reads: it must exist already (nothing is created,
    migrated or locked). Call inside :func:`one_line_errors`."""
    from framecast.db import open_existing_database

    return open_existing_database(settings.resolved_database_url)


def write_database(settings: Settings) -> Any:
    """The database of a command that writes, created or migrated first. A SQLite database's
    folder is checked first, so one that cannot be written is the same line ``serve`` prints.
    Call inside :func:`one_line_errors`."""
    from framecast.db import create_db_engine, migrate
    from framecast.startup import check_data_dir

    if _is_sqlite_file(settings):
        check_data_dir(settings)
    db = create_db_engine(settings.resolved_database_url)
    migrate(db)
    return db
