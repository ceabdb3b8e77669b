"""The `schema` table gives way to Alembic's `alembic_version`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 03:48:05.461534
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("schema")


def downgrade() -> None:
    table = op.create_table(
        "schema",
        sa.Column("version", sa.INTEGER(), nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )
    op.bulk_insert(table, [{"version": 5}])
