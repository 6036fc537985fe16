"""Schema migrations with Alembic, configured in code (no alembic.ini): ``sarcoscreen db upgrade`` and on start.

Each upgrade or downgrade runs in one transaction that first takes a lock, so several processes starting at
once (a node and its workers) migrate the database once and the others wait and find it up to date:
PostgreSQL takes a transaction-level advisory lock, SQLite starts with ``BEGIN IMMEDIATE`` (the write lock).
PostgreSQL has transactional DDL, so a failed migration leaves the schema as it was. On SQLite, migrations run
with foreign keys off (batch mode re-creates tables, and dropping a parent table would otherwise cascade to its
children) and ``PRAGMA foreign_key_check`` must find nothing before the transaction commits.

For developers, a new revision is made with::

    from alembic import command
    from sarcoscreen.db.migrate import alembic_config
    command.revision(alembic_config("sqlite:///scratch.db"), "what changes", autogenerate=True)

on a database upgraded to head; then check the file by hand (see ``script.py.mako``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import SQLAlchemyError

from sarcoscreen.db.session import BEGIN_IMMEDIATE, create_engine_from_url, mask_url, sqlite_file

__all__ = ["MIGRATIONS_DIR", "MigrationError", "alembic_config", "current", "downgrade", "ensure_schema", "head",
           "upgrade"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

_ADVISORY_LOCK_KEY = 0x5A5C0_5C4E
"""PostgreSQL advisory lock held while migrating ("sarcoscreen" in spirit; any constant bigint)."""


class MigrationError(Exception):
    """The database could not be reached or migrated; the message says why (no credentials, no data values)."""


def alembic_config(url: str | None = None) -> Config:
    """An Alembic `Config` for sarcoscreen's migrations; `url` is used when no connection is passed."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.attributes["url"] = url
    return config


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The newest revision this version of sarcoscreen knows."""
    revision = _script().get_current_head()
    if revision is None:  # pragma: no cover - the package always ships revisions
        raise MigrationError("no migrations found")
    return revision


def _revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _database_error(url: str, exc: SQLAlchemyError) -> MigrationError:
    """A `MigrationError` naming the database (password masked) and the driver's first line of text."""
    cause = getattr(exc, "orig", None) or exc
    first_line = (str(cause).strip().splitlines() or [""])[0]
    return MigrationError(f"database {mask_url(url)}: {type(cause).__name__}: {first_line}")


def current(url: str) -> str | None:
    """The database's revision, or ``None`` for an empty database (a missing SQLite file is not created)."""
    path = sqlite_file(url)
    if path is not None and not path.exists():
        return None
    engine = create_engine_from_url(url)
    try:
        with engine.connect() as connection:
            return _revision_of(connection)
    except SQLAlchemyError as exc:
        raise _database_error(url, exc) from exc
    finally:
        engine.dispose()


def _check_known(revision: str | None, url: str) -> None:
    if revision is None:
        return
    try:
        _script().get_revision(revision)
    except CommandError:
        raise MigrationError(
            f"database {mask_url(url)} is at revision {revision}, which this version of sarcoscreen does not know "
            f"(was it migrated by a newer version?)"
        ) from None


def _run_locked(url: str, action: Callable[[Config], None]) -> None:
    """Run an Alembic command on one connection, inside one transaction that holds the migration lock."""
    engine = create_engine_from_url(url)
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # Batch mode copies a table and drops the old one; with foreign keys on, the DROP would delete
                # the rows of every child table (ON DELETE CASCADE). The pragma is a no-op inside a transaction,
                # so it goes to the driver before BEGIN; the engine (and this connection) is disposed afterwards.
                connection.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")
                connection.execution_options(**{BEGIN_IMMEDIATE: True})  # changes this connection in place
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(select(func.pg_advisory_xact_lock(_ADVISORY_LOCK_KEY)))
                _check_known(_revision_of(connection), url)
                config = alembic_config(url)
                config.attributes["connection"] = connection
                try:
                    action(config)
                except CommandError as exc:
                    raise MigrationError(f"database {mask_url(url)}: {exc}") from None
                if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                    raise MigrationError(f"database {mask_url(url)}: the migration left rows whose parent row is "
                                         f"missing (PRAGMA foreign_key_check); nothing was changed")
    except SQLAlchemyError as exc:
        raise _database_error(url, exc) from exc
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    """Apply the migrations up to `revision` (default: the newest)."""
    _run_locked(url, lambda config: command.upgrade(config, revision))


def downgrade(url: str, revision: str) -> None:
    """Revert migrations down to `revision` (``"base"``: remove every table)."""
    _run_locked(url, lambda config: command.downgrade(config, revision))


def ensure_schema(url: str) -> None:
    """Bring the database to the newest revision, creating it if needed; quick when it is up to date.

    Raises `MigrationError` when the database is at a revision this version does not know.
    """
    revision = current(url)
    if revision == head():
        return
    _check_known(revision, url)
    upgrade(url)
