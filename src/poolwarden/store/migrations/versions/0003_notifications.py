"""Notifications: the notifier's idempotency ledger and delivery record.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

#: 64-bit ids where rows pile up fast; SQLite needs INTEGER for its rowid alias
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "notification",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("key", sa.String(400), nullable=False),
        sa.Column("group_key", sa.String(400), nullable=False),
        sa.Column("receiver", sa.String(100), nullable=False),
        sa.Column("channel", sa.String(500), nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("sent_at", sa.Float(), nullable=True),
        sa.Column("not_before", sa.Float(), nullable=True),
        sa.UniqueConstraint("key", "receiver", "channel",
                            name="uq_notification_key_receiver_channel"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_notification_status_not_before", "notification",
                    ["status", "not_before"])
    op.create_index("ix_notification_chain", "notification",
                    ["group_key", "receiver", "channel", "id"])


def downgrade() -> None:
    op.drop_table("notification")
