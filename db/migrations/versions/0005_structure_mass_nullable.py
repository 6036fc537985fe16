"""A bone has no mass: ``structure_measurements.mass_g`` may be ``NULL`` (issue 11).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

The measurement gives a structure a mass by the density rule - muscle's density - only when it is muscle (a muscle
or a muscle region); a bone gets its volume and attenuation only (`inference.measure.StructureMeasurement`).
``structure_measurements.mass_g`` becomes nullable. Rows written before keep their values (what the job
recorded at the time; a bone's mass there is at muscle density).

Downgrade: the older version's column is NOT NULL and its code expects every structure to have a mass, so the
rows without one (bones measured by this version) are deleted before the column is made NOT NULL again.

Written by hand; SQLite runs in batch mode (the table is copied). tests/db/test_db_schema.py compares the result
with the models on SQLite and PostgreSQL; tests/db/test_db_structure_mass.py migrates rows up and down.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("structure_measurements") as batch_op:
        batch_op.alter_column("mass_g", existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM structure_measurements WHERE mass_g IS NULL")
    with op.batch_alter_table("structure_measurements") as batch_op:
        batch_op.alter_column("mass_g", existing_type=sa.Float(), nullable=False)
