"""Alembic environment, configured programmatically by `sarcoscreen.db.migrate` (no alembic.ini).

`sarcoscreen.db.migrate` passes an open connection (already in a transaction that holds the migration lock) in
``config.attributes["connection"]``; without one (e.g. offline ``--sql`` mode) the URL in
``config.attributes["url"]`` is used. SQLite gets ``render_as_batch=True`` so that later migrations can alter
tables (SQLite's ALTER TABLE is limited: batch mode copies the table).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from sarcoscreen.db.models import Base
from sarcoscreen.db.session import create_engine_from_url

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    url = config.attributes["url"]
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection: Connection | None = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    engine = create_engine_from_url(config.attributes["url"])
    try:
        with engine.connect() as new_connection:
            _configure(new_connection)
            new_connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
