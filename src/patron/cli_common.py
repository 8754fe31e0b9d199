"""What every `patron …` sub-command shares: the console, the --database-url option and the
database it opens (migrated to the latest schema), and --as-of parsing. Sub-command modules
import this, never patron.cli (which imports them to register their commands)."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console

from patron import clock
from patron.config import get_settings

console = Console()

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="PATRON_DATABASE_URL",
        help="SQLAlchemy URL; default: SQLite file patron.db in this directory",
    ),
]


def resolve_url(database_url: str | None) -> str:
    if database_url:
        # One place for configuration: workers read the same setting from the environment.
        os.environ["PATRON_DATABASE_URL"] = database_url
        get_settings.cache_clear()
    return get_settings().resolved_database_url


def open_database(database_url: str | None):
    from patron.db.engine import Database
    from patron.db.migrate import upgrade

    url = resolve_url(database_url)
    upgrade(url)
    return Database(url)


def parse_as_of(value: str | None) -> datetime:
    if value is None:
        return clock.now()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO date or datetime") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=clock.now().tzinfo)
