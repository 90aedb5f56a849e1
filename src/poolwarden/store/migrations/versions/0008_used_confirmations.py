"""Single-use confirmations shared between processes.

The nonce of each confirmation used (a Slack Confirm or Cancel button) is inserted once;
a second use, on any master or after a restart, hits the primary key and is refused.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "used_confirmation",
        sa.Column("nonce", sa.String(200), primary_key=True),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("used_at", sa.Float(), nullable=False),
        sa.Column("used_by", sa.String(200), nullable=False),
    )
    op.create_index("ix_used_confirmation_expires_at", "used_confirmation", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_used_confirmation_expires_at", table_name="used_confirmation")
    op.drop_table("used_confirmation")
