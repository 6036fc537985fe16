"""A fresh, empty database for each part of the campaign: a SQLite file in the part's folder, or a new
PostgreSQL schema (dropped afterwards) on the server given, so that runs never collide with each other or with
the tests (`db_support.postgres_schema_url` is the tests' own isolation)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from db_support import postgres_schema_url, sqlite_url

__all__ = ["Backend", "fresh_database"]


@dataclass(frozen=True)
class Backend:
    """A database backend of the campaign: ``sqlite``, or ``postgresql`` with its server URL."""

    name: str
    server_url: str | None = None

    @property
    def label(self) -> str:
        return {"sqlite": "SQLite", "postgresql": "PostgreSQL"}.get(self.name, self.name)


@contextmanager
def fresh_database(backend: Backend, folder: Path) -> Iterator[str]:
    """The URL of an empty database on `backend` (a SQLite file under `folder`, or a new PostgreSQL schema)."""
    if backend.name == "sqlite":
        yield sqlite_url(folder)
        return
    if backend.server_url is None:
        raise ValueError("a PostgreSQL backend needs the server URL")
    with postgres_schema_url(backend.server_url) as url:
        yield url
