"""Database engines and sessions from a URL: SQLite (embedded default) or PostgreSQL (several workers).

* SQLite: the parent folder and the (empty) database file are created private, 0700/0600
  (`prepare_sqlite_file`; the node creates them first with its configured ``storage`` modes), and SQLite gives
  the ``-wal``, ``-shm`` and ``-journal`` files the database file's mode; every connection gets
  ``PRAGMA foreign_keys=ON`` (SQLite ignores foreign keys otherwise), ``journal_mode=WAL`` (readers never block
  the one writer) and a busy timeout, and SQLAlchemy emits ``BEGIN`` itself so that transactions cover DDL and
  SELECTs too (the sqlite3 driver's legacy mode does not). A connection with the execution option
  ``sqlite_begin_immediate=True`` starts with ``BEGIN IMMEDIATE`` (takes the write lock at once: use it for
  read-then-write steps such as claiming a job).
* PostgreSQL: always through psycopg 3 (``postgresql://`` is read as ``postgresql+psycopg://``), with
  ``pool_pre_ping`` so a restarted server does not break a long-running node.

Errors never show data, which may be patient identifiers: engines are created with ``hide_parameters=True`` (no
bound values in SQL errors and SQL logging), and PostgreSQL error texts are cut to their primary message (the
server's DETAIL line quotes key values and failing rows; it stays available in ``exc.orig.diag``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.engine import URL, Connection, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session

from sarcoscreen.db.models import utcnow
from sarcoscreen.inference.file_modes import PRIVATE, FileModes

__all__ = [
    "BEGIN_IMMEDIATE",
    "SQLITE_BUSY_TIMEOUT_MS",
    "create_engine_from_url",
    "db_now",
    "mask_url",
    "prepare_sqlite_file",
    "session_scope",
    "sqlite_file",
    "write_session",
]

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite connection waits for another process's write lock before failing."""

BEGIN_IMMEDIATE = "sqlite_begin_immediate"
"""Execution option: on SQLite, start the transaction with ``BEGIN IMMEDIATE`` (no effect on PostgreSQL)."""

_MASK = "***"


def _parse(url: str | URL) -> URL:
    try:
        return make_url(url)
    except ArgumentError:
        raise ValueError("not a valid database URL (expected sqlite:///PATH or postgresql+psycopg://...)") from None


def mask_url(url: str | URL) -> str:
    """`url` as text with its password (also a ``password=`` query parameter) replaced by ``***``."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        # Not parseable: still never show what could be a password between ':' and '@'.
        text = str(url)
        head, sep, tail = text.partition("://")
        if sep and "@" in tail:
            credentials, _, rest = tail.rpartition("@")
            user = credentials.split(":", 1)[0]
            return f"{head}://{user}:{_MASK}@{rest}" if ":" in credentials else text
        return text
    # URL rendering percent-encodes '*': render a placeholder made of safe characters, then swap it.
    placeholder = "sarcoscreenmaskedpassword"
    if "password" in parsed.query:
        parsed = parsed.update_query_dict({"password": placeholder})
    if parsed.password is not None:
        parsed = parsed.set(password=placeholder)
    return parsed.render_as_string(hide_password=False).replace(placeholder, _MASK)


def sqlite_file(url: str | URL) -> Path | None:
    """The database file of a file-based SQLite URL; ``None`` for in-memory SQLite and other databases."""
    parsed = _parse(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:") or parsed.query.get("mode") == "memory":
        return None
    return Path(database)


def prepare_sqlite_file(url: str | URL, modes: FileModes = PRIVATE) -> Path | None:
    """Create the folder and the empty database file of a file-based SQLite URL with `modes`, unless the file
    exists (an empty file is an empty SQLite database); returns the file, ``None`` for other databases."""
    path = sqlite_file(url)
    if path is not None and not path.exists():
        modes.make_dirs(path.parent)
        modes.touch(path)
    return path


def _sqlite_engine(parsed: URL, **kwargs: Any) -> Engine:
    path = prepare_sqlite_file(parsed)
    engine = create_engine(parsed, hide_parameters=True, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN (below), not the driver
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if path is not None:
                cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        options = connection.get_execution_options()
        if options.get("isolation_level") == "AUTOCOMMIT":
            return
        connection.exec_driver_sql("BEGIN IMMEDIATE" if options.get(BEGIN_IMMEDIATE) else "BEGIN")

    return engine


def _terse_postgresql_error(context: ExceptionContext) -> None:
    """Drop DETAIL/HINT/CONTEXT from a PostgreSQL error's text: DETAIL quotes values (patient IDs)."""
    original = context.original_exception
    diag = getattr(original, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if not primary:
        return
    original.args = (primary,)
    wrapped = context.sqlalchemy_exception
    if isinstance(wrapped, DBAPIError):  # its text was made from the driver's before this hook ran
        kind = type(original)
        wrapped.args = (f"({kind.__module__}.{kind.__name__}) {primary}",)


def create_engine_from_url(url: str | URL, **kwargs: Any) -> Engine:
    """An `Engine` for a ``sqlite:///`` or ``postgresql[+psycopg]://`` URL, set up as described in this module.

    Extra keyword arguments go to `sqlalchemy.create_engine` (e.g. ``echo=True``).

    Raises
    ------
    ValueError
        The URL is not valid, or names another database or a PostgreSQL driver other than psycopg 3.
    """
    parsed = _parse(url)
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend == "sqlite":
        if driver != "pysqlite":
            raise ValueError(f"SQLite driver {driver!r} is not supported; use sqlite:///PATH")
        return _sqlite_engine(parsed, **kwargs)
    if backend == "postgresql":
        if "+" not in parsed.drivername:
            parsed = parsed.set(drivername="postgresql+psycopg")
        elif driver != "psycopg":
            raise ValueError(f"PostgreSQL driver {driver!r} is not supported; use postgresql+psycopg://")
        kwargs.setdefault("pool_pre_ping", True)
        engine = create_engine(parsed, hide_parameters=True, **kwargs)
        event.listen(engine, "handle_error", _terse_postgresql_error)
        return engine
    raise ValueError(f"database {backend!r} is not supported; use sqlite:///PATH or postgresql+psycopg://...")


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A `Session` that commits when the block ends normally and rolls back when it raises.

    Objects stay usable after the commit (``expire_on_commit=False``), so values can be read after the block.
    """
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session for a read-then-write step: ``BEGIN IMMEDIATE`` on SQLite (the write lock at once, so two
    processes never both read the same state and act on it); an ordinary transaction on PostgreSQL, where row
    locks (``FOR UPDATE``) do that job."""
    with session_scope(engine.execution_options(**{BEGIN_IMMEDIATE: True})) as session:
        yield session


def db_now(session: Session) -> datetime:
    """The current time: the database server's on PostgreSQL (shared by all machines), this host's otherwise."""
    if session.get_bind().dialect.name == "postgresql":
        value: datetime = session.execute(select(func.statement_timestamp())).scalar_one()
        return value
    return utcnow()
