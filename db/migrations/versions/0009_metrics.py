"""Metrics and the Health page (issue 14): refused C-STOREs, each job's step durations, a delivery's latest attempt.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-14

* ``store_refusals`` (new table): one row per C-STORE the SCP refused - ``at``, ``status`` (the DIMSE status
  answered, e.g. 0xA700), ``reason`` (scrubbed), ``calling_ae_title``. A refused instance leaves no ``instances``
  row, so this is what ``sarcoscreen_instances_refused_total`` counts;
* ``jobs.step_seconds`` (JSON, NULL in older rows): seconds per step of the attempt that finished the job, for the
  ``sarcoscreen_job_step_seconds`` histogram;
* ``deliveries.last_attempt_at`` (timestamp, NULL in older rows): when the latest attempt's outcome was recorded,
  for each destination's last success and last failure on the Health page.

Downgrade drops the table and both columns (the counts and durations are gone; nothing else changes).

Written by hand; SQLite runs in batch mode. tests/db/test_db_schema.py compares the result with the models on SQLite
and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "store_refusals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("calling_ae_title", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_store_refusals")),
    )
    op.create_index(op.f("ix_store_refusals_at"), "store_refusals", ["at"], unique=False)
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("step_seconds", sa.JSON(), nullable=True))
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.add_column(sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_column("last_attempt_at")
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_column("step_seconds")
    op.drop_index(op.f("ix_store_refusals_at"), table_name="store_refusals")
    op.drop_table("store_refusals")
