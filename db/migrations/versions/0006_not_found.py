"""A member muscle not found where the scan holds it: ``group_results.completeness`` may be ``not found`` (issue 12).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08

With a per-muscle engine, a group member without voxels is judged by where it should be relative to the engine's
landmarks (`inference.muscle_extents`): *not in scan* when the landmarks place it outside the scan, *not found* when
the scan holds where it lies - a segmentation failure, which the group carries as a QA flag
(`inference.measure.Completeness.NOT_FOUND`). The CHECK constraint ``ck_group_results_completeness`` is re-created
with the new value. The QA flag is the completeness itself, so no column is added.

Downgrade: the older version records a missing member as ``not in scan`` (what it called every group with a member
without voxels and none cut), so ``not found`` rows become ``not in scan``; their reason still says not found.

Written by hand; SQLite runs in batch mode (the table is copied). tests/db/test_db_schema.py compares the result with
the models on SQLite and PostgreSQL and migrates rows up and down.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_COMPLETENESS = ("complete", "truncated", "uncertain", "not in scan", "not produced by the engine")
_NEW_COMPLETENESS = ("complete", "truncated", "uncertain", "not in scan", "not found", "not produced by the engine")


def _completeness_check(values: Sequence[str]) -> str:
    return "completeness IN (" + ", ".join(f"'{value}'" for value in values) + ")"


def upgrade() -> None:
    with op.batch_alter_table("group_results") as batch_op:
        batch_op.drop_constraint(op.f("ck_group_results_completeness"), type_="check")
        batch_op.create_check_constraint(op.f("ck_group_results_completeness"),
                                         _completeness_check(_NEW_COMPLETENESS))


def downgrade() -> None:
    op.execute("UPDATE group_results SET completeness = 'not in scan' WHERE completeness = 'not found'")
    with op.batch_alter_table("group_results") as batch_op:
        batch_op.drop_constraint(op.f("ck_group_results_completeness"), type_="check")
        batch_op.create_check_constraint(op.f("ck_group_results_completeness"),
                                         _completeness_check(_OLD_COMPLETENESS))
