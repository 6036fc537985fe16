"""The node's queue and outbox: why a job was made, how many instances it analysed, cancelled deliveries.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

* ``jobs.reason`` (VARCHAR 256): why the job was made (series stable, late instances, retry by user);
* ``jobs.instance_count`` (INTEGER): instances of the series the worker loaded;
* ``deliveries.status`` may be ``cancelled`` (superseded by a newer job of the series, or cancelled by a user):
  the CHECK constraint ``ck_deliveries_status`` is re-created with the new value.

Written by hand; SQLite runs in batch mode (the table is copied). tests/db/test_db_schema.py compares the result
with the models on SQLite and PostgreSQL; tests/db/test_queue.py checks that the constraint takes the new value.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_STATUSES = ("pending", "sent", "failed")
_NEW_STATUSES = (*_OLD_STATUSES, "cancelled")


def _status_check(values: Sequence[str]) -> str:
    return "status IN (" + ", ".join(f"'{value}'" for value in values) + ")"


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("reason", sa.String(length=256), nullable=True))
        batch_op.add_column(sa.Column("instance_count", sa.Integer(), nullable=True))
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_constraint(op.f("ck_deliveries_status"), type_="check")
        batch_op.create_check_constraint(op.f("ck_deliveries_status"), _status_check(_NEW_STATUSES))


def downgrade() -> None:
    # A cancelled delivery was not sent and will not be: "failed" is the nearest earlier state.
    op.execute("UPDATE deliveries SET status = 'failed' WHERE status = 'cancelled'")
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_constraint(op.f("ck_deliveries_status"), type_="check")
        batch_op.create_check_constraint(op.f("ck_deliveries_status"), _status_check(_OLD_STATUSES))
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_column("instance_count")
        batch_op.drop_column("reason")
