"""Baseline: the tables of schema 5, as the release before migrations made them.

A database that release made is stamped at this revision, not run through it.

Revision ID: 0001
Revises:
Create Date: 2026-11-28 03:47:40.735965
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(length=24), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("admin", sa.Boolean(), nullable=False),
        sa.Column("label", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("key_id"),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_client_id"), ["client_id"], unique=False)

    op.create_table(
        "audits",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("cid", sa.String(length=80), nullable=False),
        sa.Column("node_id", sa.String(length=80), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audits_node_id"), ["node_id"], unique=False)

    op.create_table(
        "block_challenges",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("cid", sa.String(length=80), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("proof", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("block_challenges", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_block_challenges_cid"), ["cid"], unique=False)

    op.create_table(
        "block_providers",
        sa.Column("cid", sa.String(length=80), nullable=False),
        sa.Column("node_id", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("cid", "node_id"),
    )
    op.create_table(
        "datasets",
        sa.Column("root", sa.String(length=80), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("blocks", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("root"),
    )
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_datasets_owner"), ["owner"], unique=False)

    op.create_table(
        "epochs",
        sa.Column("epoch", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("closed_at", sa.DateTime(), nullable=False),
        sa.Column("root", sa.String(length=66), nullable=False),
        sa.Column("operators", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("amount_micro", sa.BigInteger(), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("posted_at", sa.DateTime(), nullable=True),
        sa.Column("settled_at", sa.DateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("epoch"),
    )
    with op.batch_alter_table("epochs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_epochs_state"), ["state"], unique=False)

    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String(length=80), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("workload", sa.String(length=40), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("model", sa.String(length=80), nullable=False),
        sa.Column("model_sha256", sa.String(length=64), nullable=False),
        sa.Column("documents", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("shards_total", sa.Integer(), nullable=False),
        sa.Column("shards_done", sa.Integer(), nullable=False),
        sa.Column("tokens_processed", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("error", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(length=80), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("job_id"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_owner"), ["owner"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_state"), ["state"], unique=False)

    op.create_table(
        "ledger",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("shard_id", sa.String(length=80), nullable=False),
        sa.Column("job_id", sa.String(length=80), nullable=False),
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("model", sa.String(length=80), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("amount_micro", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=True),
        sa.Column("withheld", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ledger", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ledger_address"), ["address"], unique=False)
        batch_op.create_index(batch_op.f("ix_ledger_epoch"), ["epoch"], unique=False)
        batch_op.create_index(batch_op.f("ix_ledger_job_id"), ["job_id"], unique=False)
        batch_op.create_index(
            "ix_ledger_paid_once",
            ["shard_id"],
            unique=True,
            sqlite_where=sa.text("NOT withheld"),
            postgresql_where=sa.text("NOT withheld"),
        )
        batch_op.create_index("ix_ledger_shard_address", ["shard_id", "address"], unique=True)
        batch_op.create_index(batch_op.f("ix_ledger_shard_id"), ["shard_id"], unique=False)

    op.create_table(
        "nodes",
        sa.Column("node_id", sa.String(length=80), nullable=False),
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("hardware", sa.JSON(), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("version", sa.String(length=40), nullable=False),
        sa.Column("peer_id", sa.String(length=128), nullable=False),
        sa.Column("multiaddrs", sa.JSON(), nullable=False),
        sa.Column("registered_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=False),
        sa.Column("shards_done", sa.Integer(), nullable=False),
        sa.Column("tokens_processed", sa.Integer(), nullable=False),
        sa.Column("reputation", sa.Double(), nullable=False),
        sa.Column("audits_passed", sa.Integer(), nullable=False),
        sa.Column("audits_failed", sa.Integer(), nullable=False),
        sa.Column("verifications_passed", sa.Integer(), nullable=False),
        sa.Column("verifications_failed", sa.Integer(), nullable=False),
        sa.Column("agreed_since_caught", sa.Integer(), nullable=False),
        sa.Column("shards_failed", sa.Integer(), nullable=False),
        sa.Column("shards_abandoned", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("node_id"),
    )
    op.create_table(
        "onnx_models",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("cid", sa.String(length=80), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("manifest", sa.String(), nullable=False),
        sa.Column("max_error", sa.Double(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "schema",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )
    op.bulk_insert(sa.table("schema", sa.column("version", sa.Integer())), [{"version": 5}])
    op.create_table(
        "verifications",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("shard_id", sa.String(length=80), nullable=False),
        sa.Column("node_id", sa.String(length=80), nullable=False),
        sa.Column("agreed", sa.Boolean(), nullable=False),
        sa.Column("cosine", sa.Double(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_verifications_node_id"), ["node_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_verifications_shard_id"), ["shard_id"], unique=False)

    op.create_table(
        "withheld",
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("since", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("address"),
    )
    op.create_table(
        "dataset_blocks",
        sa.Column("root", sa.String(length=80), nullable=False),
        sa.Column("cid", sa.String(length=80), nullable=False),
        sa.ForeignKeyConstraint(
            ["root"],
            ["datasets.root"],
        ),
        sa.PrimaryKeyConstraint("root", "cid"),
    )
    op.create_table(
        "documents",
        sa.Column("job_id", sa.String(length=80), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("detail", sa.LargeBinary(), nullable=False),
        sa.Column("result", sa.LargeBinary(), nullable=True),
        sa.Column("source", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.job_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "index"),
    )
    op.create_table(
        "epoch_balances",
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("earned_micro", sa.BigInteger(), nullable=False),
        sa.Column("cumulative_micro", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["epoch"],
            ["epochs.epoch"],
        ),
        sa.PrimaryKeyConstraint("epoch", "address"),
    )
    op.create_table(
        "shards",
        sa.Column("shard_id", sa.String(length=80), nullable=False),
        sa.Column("job_id", sa.String(length=80), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("detail", sa.LargeBinary(), nullable=False),
        sa.Column("cost", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("node_id", sa.String(length=80), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("leased_at", sa.DateTime(), nullable=True),
        sa.Column("output", sa.LargeBinary(), nullable=True),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("wall_seconds", sa.Double(), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("completed_at", sa.DateTime(), nullable=True),
        sa.Column("read_bytes", sa.BigInteger(), nullable=False),
        sa.Column("local_nodes", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.job_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("shard_id"),
    )
    with op.batch_alter_table("shards", schema=None) as batch_op:
        batch_op.create_index("ix_shards_job_index", ["job_id", "index"], unique=True)
        batch_op.create_index(batch_op.f("ix_shards_state"), ["state"], unique=False)

    op.create_table(
        "shard_payloads",
        sa.Column("shard_id", sa.String(length=80), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("external", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["shard_id"], ["shards.shard_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("shard_id"),
    )


def downgrade() -> None:
    op.drop_table("shard_payloads")
    with op.batch_alter_table("shards", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shards_state"))
        batch_op.drop_index("ix_shards_job_index")

    op.drop_table("shards")
    op.drop_table("epoch_balances")
    op.drop_table("documents")
    op.drop_table("dataset_blocks")
    op.drop_table("withheld")
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_verifications_shard_id"))
        batch_op.drop_index(batch_op.f("ix_verifications_node_id"))

    op.drop_table("verifications")
    op.drop_table("schema")
    op.drop_table("onnx_models")
    op.drop_table("nodes")
    with op.batch_alter_table("ledger", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_shard_id"))
        batch_op.drop_index("ix_ledger_shard_address")
        batch_op.drop_index(
            "ix_ledger_paid_once",
            sqlite_where=sa.text("NOT withheld"),
            postgresql_where=sa.text("NOT withheld"),
        )
        batch_op.drop_index(batch_op.f("ix_ledger_job_id"))
        batch_op.drop_index(batch_op.f("ix_ledger_epoch"))
        batch_op.drop_index(batch_op.f("ix_ledger_address"))

    op.drop_table("ledger")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_state"))
        batch_op.drop_index(batch_op.f("ix_jobs_owner"))

    op.drop_table("jobs")
    with op.batch_alter_table("epochs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_epochs_state"))

    op.drop_table("epochs")
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_datasets_owner"))

    op.drop_table("datasets")
    op.drop_table("block_providers")
    with op.batch_alter_table("block_challenges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_block_challenges_cid"))

    op.drop_table("block_challenges")
    with op.batch_alter_table("audits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audits_node_id"))

    op.drop_table("audits")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_client_id"))

    op.drop_table("api_keys")
