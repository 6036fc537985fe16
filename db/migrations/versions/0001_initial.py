"""The initial schema: what arrived, the work, the results, the outbox, the height registry and the audit trail.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Written by hand to match ``sarcoscreen.db.models`` exactly (names follow ``NAMING_CONVENTION``; enumerations
are VARCHAR columns with CHECK constraints; timestamps are ``TIMESTAMP WITH TIME ZONE`` holding UTC).
tests/db/test_db_schema.py checks it against the models on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, *, nullable: bool) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _one_of(column: str, table: str, values: Sequence[str]) -> sa.CheckConstraint:
    """The CHECK constraint SQLAlchemy makes for a non-native Enum named after `column`."""
    listed = ", ".join(f"'{value}'" for value in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=op.f(f"ck_{table}_{column}"))


def upgrade() -> None:
    op.create_table(
        "patient_heights",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("height_m", sa.Float(), nullable=False),
        sa.Column("measured_on", sa.Date(), nullable=True),
        sa.Column("source_file", sa.String(length=1024), nullable=True),
        _timestamp("imported_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_heights")),
        sa.UniqueConstraint("patient_id", "measured_on", name=op.f("uq_patient_heights_patient_id_measured_on")),
        sa.CheckConstraint("height_m > 0", name=op.f("ck_patient_heights_height_positive")),
    )
    op.create_index(
        "uq_patient_heights_patient_id_undated",
        "patient_heights",
        ["patient_id"],
        unique=True,
        sqlite_where=sa.text("measured_on IS NULL"),
        postgresql_where=sa.text("measured_on IS NULL"),
    )

    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=True),
        sa.Column("accession_number", sa.String(length=64), nullable=True),
        sa.Column("study_date", sa.Date(), nullable=True),
        sa.Column("study_description", sa.String(length=256), nullable=True),
        sa.Column("patient_sex", sa.String(length=16), nullable=True),
        sa.Column("patient_size_recorded", sa.Float(), nullable=True),
        _timestamp("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_studies")),
        sa.UniqueConstraint("study_instance_uid", name=op.f("uq_studies_study_instance_uid")),
    )
    op.create_index(op.f("ix_studies_patient_id"), "studies", ["patient_id"])

    op.create_table(
        "series",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("series_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=True),
        sa.Column("series_description", sa.String(length=256), nullable=True),
        sa.Column("body_part", sa.String(length=64), nullable=True),
        sa.Column("slice_thickness_mm", sa.Float(), nullable=True),
        sa.Column("instance_count", sa.Integer(), nullable=False),
        _timestamp("first_received_at", nullable=False),
        _timestamp("last_received_at", nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("skip_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_series")),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], name=op.f("fk_series_study_id_studies"),
                                ondelete="CASCADE"),
        sa.UniqueConstraint("series_instance_uid", name=op.f("uq_series_series_instance_uid")),
        _one_of("state", "series", ("receiving", "stable", "queued", "skipped", "processed", "failed")),
    )
    op.create_index(op.f("ix_series_study_id"), "series", ["study_id"])
    op.create_index(op.f("ix_series_state_last_received_at"), "series", ["state", "last_received_at"])

    op.create_table(
        "instances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("transfer_syntax_uid", sa.String(length=64), nullable=False),
        sa.Column("spool_path", sa.String(length=1024), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        _timestamp("received_at", nullable=False),
        sa.Column("calling_ae_title", sa.String(length=16), nullable=True),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("image_type", sa.String(length=256), nullable=True),
        sa.Column("axial", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instances")),
        sa.ForeignKeyConstraint(["series_id"], ["series.id"], name=op.f("fk_instances_series_id_series"),
                                ondelete="CASCADE"),
        sa.UniqueConstraint("sop_instance_uid", name=op.f("uq_instances_sop_instance_uid")),
        _one_of("state", "instances", ("stored", "missing file", "changed file")),
    )
    op.create_index(op.f("ix_instances_series_id"), "instances", ["series_id"])

    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        _timestamp("lease_expires_at", nullable=True),
        _timestamp("heartbeat_at", nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        _timestamp("next_attempt_at", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("engine_name", sa.String(length=64), nullable=True),
        sa.Column("engine_version", sa.String(length=64), nullable=True),
        sa.Column("settings_hash", sa.String(length=64), nullable=True),
        _timestamp("created_at", nullable=False),
        _timestamp("started_at", nullable=True),
        _timestamp("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.ForeignKeyConstraint(["series_id"], ["series.id"], name=op.f("fk_jobs_series_id_series"),
                                ondelete="CASCADE"),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_jobs_attempts_not_negative")),
        sa.CheckConstraint("max_attempts >= 1", name=op.f("ck_jobs_max_attempts_positive")),
        _one_of("status", "jobs", ("queued", "running", "done", "failed", "cancelled")),
    )
    op.create_index(op.f("ix_jobs_series_id"), "jobs", ["series_id"])
    op.create_index(op.f("ix_jobs_status_next_attempt_at"), "jobs", ["status", "next_attempt_at"])
    op.create_index(op.f("ix_jobs_status_lease_expires_at"), "jobs", ["status", "lease_expires_at"])

    op.create_table(
        "structure_measurements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("structure_key", sa.String(length=64), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("side", sa.String(length=16), nullable=False),
        sa.Column("voxels", sa.BigInteger(), nullable=False),
        sa.Column("volume_cm3", sa.Float(), nullable=False),
        sa.Column("mean_hu", sa.Float(), nullable=True),
        sa.Column("sd_hu", sa.Float(), nullable=True),
        sa.Column("fraction_in_window", sa.Float(), nullable=True),
        sa.Column("mass_g", sa.Float(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("uncertainty", sa.Float(), nullable=True),
        sa.Column("qa_flag", sa.Boolean(), nullable=True),
        sa.Column("density_rule", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_structure_measurements")),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_structure_measurements_job_id_jobs"),
                                ondelete="CASCADE"),
        sa.UniqueConstraint("job_id", "structure_key", name=op.f("uq_structure_measurements_job_id_structure_key")),
        _one_of("side", "structure_measurements", ("right", "left", "midline")),
    )

    op.create_table(
        "group_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("muscle_group", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=16), nullable=False),
        sa.Column("completeness", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("smm_g", sa.Float(), nullable=True),
        sa.Column("smi_kg_m2", sa.Float(), nullable=True),
        sa.Column("screening_side_rule", sa.String(length=16), nullable=True),
        sa.Column("screening_smi_kg_m2", sa.Float(), nullable=True),
        sa.Column("classification", sa.String(length=16), nullable=True),
        sa.Column("classification_reason", sa.Text(), nullable=True),
        sa.Column("cutoff_kg_m2", sa.Float(), nullable=True),
        sa.Column("calibration_name", sa.String(length=256), nullable=True),
        sa.Column("calibration_sha256", sa.String(length=64), nullable=True),
        sa.Column("height_m", sa.Float(), nullable=True),
        sa.Column("height_source", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_group_results")),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_group_results_job_id_jobs"),
                                ondelete="CASCADE"),
        sa.UniqueConstraint("job_id", "muscle_group", "side", name=op.f("uq_group_results_job_id_muscle_group_side")),
        _one_of("side", "group_results", ("left", "right", "both")),
        _one_of("completeness", "group_results",
                ("complete", "truncated", "not in scan", "not produced by the engine")),
        _one_of("classification", "group_results", ("suspected", "not suspected", "not classified")),
        _one_of("height_source", "group_results", ("explicit", "dicom", "registry", "unknown")),
    )

    op.create_table(
        "outputs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("series_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        _timestamp("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outputs")),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_outputs_job_id_jobs"), ondelete="CASCADE"),
        sa.UniqueConstraint("job_id", "sop_instance_uid", name=op.f("uq_outputs_job_id_sop_instance_uid")),
        _one_of("kind", "outputs", ("SEG", "SR", "KEY_IMAGE")),
    )
    op.create_index(op.f("ix_outputs_sop_instance_uid"), "outputs", ["sop_instance_uid"])

    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("output_id", sa.Integer(), nullable=False),
        sa.Column("destination_name", sa.String(length=64), nullable=False),
        sa.Column("destination_ae_title", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _timestamp("next_attempt_at", nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _timestamp("sent_at", nullable=True),
        _timestamp("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.ForeignKeyConstraint(["output_id"], ["outputs.id"], name=op.f("fk_deliveries_output_id_outputs"),
                                ondelete="CASCADE"),
        sa.UniqueConstraint("output_id", "destination_name", name=op.f("uq_deliveries_output_id_destination_name")),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_deliveries_attempts_not_negative")),
        sa.CheckConstraint("port >= 1 AND port <= 65535", name=op.f("ck_deliveries_port_range")),
        _one_of("status", "deliveries", ("pending", "sent", "failed")),
    )
    op.create_index(op.f("ix_deliveries_status_next_attempt_at"), "deliveries", ["status", "next_attempt_at"])

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), nullable=False),
        _timestamp("occurred_at", nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.ForeignKeyConstraint(["series_id"], ["series.id"], name=op.f("fk_events_series_id_series"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_events_job_id_jobs"), ondelete="SET NULL"),
        _one_of("level", "events", ("DEBUG", "INFO", "WARNING", "ERROR")),
    )
    op.create_index(op.f("ix_events_occurred_at"), "events", ["occurred_at"])
    op.create_index(op.f("ix_events_series_id"), "events", ["series_id"])
    op.create_index(op.f("ix_events_job_id"), "events", ["job_id"])


def downgrade() -> None:
    # Children before parents; indexes go with their tables.
    for table in (
        "events",
        "deliveries",
        "outputs",
        "group_results",
        "structure_measurements",
        "jobs",
        "instances",
        "series",
        "studies",
        "patient_heights",
    ):
        op.drop_table(table)
