"""Truncated and uncertain groups, and the upper gluteal group: what issue 10's measurement model records.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

* ``group_results.completeness`` may be ``uncertain`` (a landmark bounding the group is uncertain): the CHECK
  constraint ``ck_group_results_completeness`` is re-created with the new value;
* ``group_results.in_scan_smm_g`` (FLOAT): the mass of the group's muscle inside the scan (a lower bound for a
  truncated or uncertain group; equal to ``smm_g`` when complete);
* ``group_results.shortfall_mm`` (FLOAT): for a truncated group, how far the scan falls short, when known;
* ``structure_measurements.extent_uncertain`` (BOOLEAN), ``shortfall_mm`` (FLOAT), ``extent_note`` (TEXT): the
  engine's verdict on a structure's extent. All new columns are nullable (``NULL`` in rows written before).

``group_results.muscle_group`` has no CHECK constraint, so the new group ``upper_gluteal`` needs no change.
Landmarks are not stored in the database (they are in ``measurements.json``), so their certainty needs none.

Downgrade: the older version knows neither ``uncertain`` nor ``upper_gluteal``. ``uncertain`` rows become
``truncated`` (the nearest earlier state: in the scan, no mass; the reason still says why), and the
``upper_gluteal`` rows are deleted (the older version would fail on a group it does not know).

Written by hand; SQLite runs in batch mode (the tables are copied). tests/db/test_db_schema.py compares the result
with the models on SQLite and PostgreSQL and migrates rows up and down.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_COMPLETENESS = ("complete", "truncated", "not in scan", "not produced by the engine")
_NEW_COMPLETENESS = ("complete", "truncated", "uncertain", "not in scan", "not produced by the engine")


def _completeness_check(values: Sequence[str]) -> str:
    return "completeness IN (" + ", ".join(f"'{value}'" for value in values) + ")"


def upgrade() -> None:
    with op.batch_alter_table("group_results") as batch_op:
        batch_op.drop_constraint(op.f("ck_group_results_completeness"), type_="check")
        batch_op.create_check_constraint(op.f("ck_group_results_completeness"),
                                         _completeness_check(_NEW_COMPLETENESS))
        batch_op.add_column(sa.Column("in_scan_smm_g", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("shortfall_mm", sa.Float(), nullable=True))
    with op.batch_alter_table("structure_measurements") as batch_op:
        batch_op.add_column(sa.Column("extent_uncertain", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("shortfall_mm", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("extent_note", sa.Text(), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM group_results WHERE muscle_group = 'upper_gluteal'")
    op.execute("UPDATE group_results SET completeness = 'truncated' WHERE completeness = 'uncertain'")
    with op.batch_alter_table("structure_measurements") as batch_op:
        batch_op.drop_column("extent_note")
        batch_op.drop_column("shortfall_mm")
        batch_op.drop_column("extent_uncertain")
    with op.batch_alter_table("group_results") as batch_op:
        batch_op.drop_column("shortfall_mm")
        batch_op.drop_column("in_scan_smm_g")
        batch_op.drop_constraint(op.f("ck_group_results_completeness"), type_="check")
        batch_op.create_check_constraint(op.f("ck_group_results_completeness"),
                                         _completeness_check(_OLD_COMPLETENESS))
