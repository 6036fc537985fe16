"""Databases for the database tests: a SQLite file in a temporary folder, or a fresh PostgreSQL schema.

On PostgreSQL each test gets its own schema ``t_<random>`` (the URL sets ``search_path`` to it through libpq's
``options``), dropped afterwards, so tests never collide and leave the test database clean.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, insert, text
from sqlalchemy.engine import make_url

from sarcoscreen.db.models import Job, JobStatus, Series, Study
from sarcoscreen.db.session import session_scope

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
"""Parameters of a database fixture: every test runs on both (PostgreSQL skipped without a server URL)."""


def sqlite_url(folder: Path) -> str:
    """A SQLite file in a not yet existing sub-folder (the engine must create it)."""
    return f"sqlite:///{folder / 'db' / 'sarcoscreen.db'}"


@contextmanager
def postgres_schema_url(server_url: str, prefix: str = "t_") -> Iterator[str]:
    """A URL whose connections use a new, empty schema ``<prefix><random>``; the schema is dropped on exit (also
    used by the benchmarks)."""
    schema = f"{prefix}{uuid.uuid4().hex[:16]}"
    admin = create_engine(server_url)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            yield make_url(server_url).update_query_dict(
                {"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
        finally:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


@contextmanager
def database_url(backend: str, request: pytest.FixtureRequest, folder: Path) -> Iterator[str]:
    """The URL of an empty database on `backend` (``sqlite`` or ``postgresql``) for one test."""
    if backend == "sqlite":
        yield sqlite_url(folder)
        return
    with postgres_schema_url(request.getfixturevalue("postgres_url")) as url:
        yield url


def done_job_on_an_older_schema(engine: Engine) -> int:
    """A study ``1.2.3``, its series ``1.2.3.4`` and a done job, the job written with only the columns every revision
    has (the ORM writes every column of today's model - ``jobs.step_seconds`` since 0009 - which an older schema
    lacks); returns the job id. For tests that put rows into a database migrated to an older revision."""
    jobs = Job.__table__
    with session_scope(engine) as session:
        series = Series(study=Study(study_instance_uid="1.2.3", patient_id="P-1"), series_instance_uid="1.2.3.4",
                        modality="CT")
        session.add(series)
        session.flush()
        job_id: int = session.execute(insert(jobs).values(series_id=series.id, status=JobStatus.DONE.value)
                                      .returning(jobs.c.id)).scalar_one()
    return job_id
