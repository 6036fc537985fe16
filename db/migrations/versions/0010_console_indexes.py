"""Indexes for the web console's filters and the per-destination outbox figures (issue 14, part 4).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-15

Measured with 10,000 series (``benchmarks/web_console.py``, docs/benchmarks.md): the results page's QA filter read
every structure measurement (67 per job) and every group result, and took 250-290 ms; the flagged and completeness
filters read every group result (12 per job), twice per page (count and rows); the queue and Health pages and
``/metrics`` counted the outbox by destination by reading every delivery. Each grows with the database.

* ``ix_group_results_classification_side_job_id``: the flagged filter (``side = 'both' AND classification =
  'suspected'``) from the index alone;
* ``ix_group_results_completeness_side_muscle_group_job_id``: a group's completeness (with or without the group)
  and the QA filter's ``completeness = 'not found'``;
* ``ix_structure_measurements_job_id_qa_flagged``: partial, only the structures above the uncertainty threshold
  (``qa_flag IS true`` on PostgreSQL, ``qa_flag IS 1`` on SQLite: the condition as the ORM writes it, which each
  database must match to use a partial index);
* ``ix_deliveries_destination_name_status_sent_at``: deliveries by destination and status (counts, pending, the
  latest success).

Downgrade drops them (nothing else changes). Written by hand; tests/db/test_db_schema.py compares the result with
the models on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES: tuple[tuple[str, str, list[str]], ...] = (
    ("ix_group_results_classification_side_job_id", "group_results", ["classification", "side", "job_id"]),
    ("ix_group_results_completeness_side_muscle_group_job_id", "group_results",
     ["completeness", "side", "muscle_group", "job_id"]),
    ("ix_deliveries_destination_name_status_sent_at", "deliveries", ["destination_name", "status", "sent_at"]),
)
QA_FLAGGED = "ix_structure_measurements_job_id_qa_flagged"


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)
    op.create_index(QA_FLAGGED, "structure_measurements", ["job_id"], unique=False,
                    sqlite_where=sa.text("qa_flag IS 1"), postgresql_where=sa.text("qa_flag IS true"))


def downgrade() -> None:
    op.drop_index(QA_FLAGGED, table_name="structure_measurements")
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
