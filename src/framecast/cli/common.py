"""What every ``framecast`` subcommand shares: settings from flags, logging, common options."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from framecast.settings import Settings, get_settings

DataDir = Annotated[Path | None, typer.Option(help="FRAMECAST_DATA_DIR", show_default=False)]


def settings_from_flags(**flags: Any) -> Settings:
    """Settings from the environment, with the flags given on the command line on top.

    Flags are written to the environment (as FRAMECAST_*) so worker processes started from
    here see exactly the same configuration.
    """
    for name, value in flags.items():
        if value is not None:
            os.environ[f"FRAMECAST_{name.upper()}"] = str(value)
    get_settings.cache_clear()
    return get_settings()


def configure_cli_logging(settings: Settings) -> None:
    from framecast.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
