"""The QA web console's users: table ``web_users`` (issue 14).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-09

One row per person who may sign in to the console (``sarcoscreen web user add NAME``): a unique name, the Argon2id
hash of the password (argon2-cffi's encoded form), when the row was made and the last successful sign-in. No
patient data.

Downgrade: the table is dropped (the console's users are gone; nothing else refers to them).

Written by hand. tests/db/test_db_schema.py compares the result with the models on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "web_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_sign_in_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_users")),
        sa.UniqueConstraint("name", name=op.f("uq_web_users_name")),
    )


def downgrade() -> None:
    op.drop_table("web_users")
