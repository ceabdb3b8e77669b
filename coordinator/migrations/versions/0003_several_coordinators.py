"""Several coordinators share one database: their instances, and which one holds each shard.

Shards of a database made before are unclaimed (owner NULL): the first coordinator to start on
it claims them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 05:42:29.606857
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "coordinators",
        sa.Column("coordinator_id", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=300), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("coordinator_id"),
    )
    with op.batch_alter_table("shards", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner", sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_shards_owner"), ["owner"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("shards", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shards_owner"))
        batch_op.drop_column("owner")

    op.drop_table("coordinators")
