"""No ``stable`` series state: ``series.state`` is one of receiving, queued, skipped, processed, failed (issue 13).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

The series watcher decides a series idle for ``network.stable_age_s`` in the same transaction that finds it idle,
so no version ever set ``stable`` and nobody could observe it (`sarcoscreen.db.series_state` has the transitions).
The CHECK constraint ``ck_series_state`` is re-created without the value. A row that holds ``stable`` all the same
(written by hand) becomes ``receiving``: the watcher decides it again once it is idle, which is what ``stable``
waited for.

Downgrade: the constraint takes ``stable`` again; no row changes.

Written by hand; SQLite runs in batch mode (the table is copied). tests/db/test_db_schema.py compares the result with
the models on SQLite and PostgreSQL, and tests/db/test_series_state.py migrates rows up and down.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_STATES = ("receiving", "stable", "queued", "skipped", "processed", "failed")
_NEW_STATES = ("receiving", "queued", "skipped", "processed", "failed")


def _state_check(values: Sequence[str]) -> str:
    return "state IN (" + ", ".join(f"'{value}'" for value in values) + ")"


def upgrade() -> None:
    op.execute("UPDATE series SET state = 'receiving' WHERE state = 'stable'")
    with op.batch_alter_table("series") as batch_op:
        batch_op.drop_constraint(op.f("ck_series_state"), type_="check")
        batch_op.create_check_constraint(op.f("ck_series_state"), _state_check(_NEW_STATES))


def downgrade() -> None:
    with op.batch_alter_table("series") as batch_op:
        batch_op.drop_constraint(op.f("ck_series_state"), type_="check")
        batch_op.create_check_constraint(op.f("ck_series_state"), _state_check(_OLD_STATES))
