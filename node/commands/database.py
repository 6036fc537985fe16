"""The database as commands use it: the schema brought up to date when configured, the SQLAlchemy engine (``db``)
made and disposed of, and a database that cannot be reached or migrated told as one `UserError`.

SQLAlchemy engines are called ``db`` here: "engine" is the segmentation engine in sarcoscreen.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sarcoscreen.node.commands.command import Run, loaded
from sarcoscreen.node.commands.errors import ExitCode, UserError
from sarcoscreen.node.config import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["DatabaseRun", "database_errors", "migrate_if_configured", "with_database"]

DatabaseRun = Callable[[argparse.Namespace, Settings, "Engine"], int]
"""A command body that works on the database: ``(args, settings, db) -> exit code``."""


@contextmanager
def database_errors(url: str) -> Iterator[None]:
    """Turn a database that cannot be reached or migrated (`MigrationError`, SQLAlchemy's `OperationalError`)
    into a `UserError` of one line: the database with its password masked and the driver's first line of text
    (never the SQL statement or its parameters)."""
    from sqlalchemy.exc import OperationalError

    from sarcoscreen.db.migrate import MigrationError
    from sarcoscreen.db.session import mask_url

    try:
        yield
    except MigrationError as exc:
        raise UserError(str(exc), ExitCode.FAILED) from None
    except OperationalError as exc:
        cause = exc.orig if exc.orig is not None else exc
        first_line = (str(cause).strip().splitlines() or [""])[0]
        raise UserError(f"database {mask_url(url)}: {type(cause).__name__}: {first_line}", ExitCode.FAILED) from None


def migrate_if_configured(settings: Settings) -> None:
    """Bring the schema to the newest revision when ``database.migrate_on_start`` is set (`MigrationError`
    otherwise, which `database_errors` tells)."""
    if settings.database.migrate_on_start:
        from sarcoscreen.db.migrate import ensure_schema

        ensure_schema(settings.database_url)


def with_database(command: DatabaseRun) -> Run:
    """A command's ``run`` from a body that needs the database: the schema migrated when configured
    (`migrate_if_configured`), the engine passed as ``db`` and disposed of afterwards, database errors told as
    one line (`database_errors`)."""

    @functools.wraps(command)
    def run(args: argparse.Namespace, settings: Settings | None) -> int:
        from sarcoscreen.db.session import create_engine_from_url

        settings = loaded(settings)
        with database_errors(settings.database_url):
            migrate_if_configured(settings)
            db = create_engine_from_url(settings.database_url)
            try:
                return command(args, settings, db)
            finally:
                db.dispose()

    return run
