"""Retention: spool files and output files deleted when their retention period ends.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

* ``instances.state`` may be ``purged`` (the spool file was deleted at the end of ``storage.retention_days``; the
  row stays for the record): the CHECK constraint ``ck_instances_state`` is re-created with the new value;
* ``outputs.purged_at`` (timestamp, NULL while the file exists): when the output file was deleted at the end of
  ``storage.outputs_retention_days``.

Written by hand; SQLite runs in batch mode (the table is copied). tests/db/test_db_schema.py compares the result
with the models on SQLite and PostgreSQL; tests/node/test_retention.py uses both.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_STATES = ("stored", "missing file", "changed file")
_NEW_STATES = (*_OLD_STATES, "purged")


def _state_check(values: Sequence[str]) -> str:
    return "state IN (" + ", ".join(f"'{value}'" for value in values) + ")"


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch_op:
        batch_op.drop_constraint(op.f("ck_instances_state"), type_="check")
        batch_op.create_check_constraint(op.f("ck_instances_state"), _state_check(_NEW_STATES))
    with op.batch_alter_table("outputs") as batch_op:
        batch_op.add_column(sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # A purged instance's file is gone: "missing file" is the nearest earlier state.
    op.execute("UPDATE instances SET state = 'missing file' WHERE state = 'purged'")
    with op.batch_alter_table("outputs") as batch_op:
        batch_op.drop_column("purged_at")
    with op.batch_alter_table("instances") as batch_op:
        batch_op.drop_constraint(op.f("ck_instances_state"), type_="check")
        batch_op.create_check_constraint(op.f("ck_instances_state"), _state_check(_OLD_STATES))
