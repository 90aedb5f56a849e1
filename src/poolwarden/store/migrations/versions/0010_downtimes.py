"""Scheduled downtimes: planned work during which a host's alerts notify nobody.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "downtime",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("check", sa.String(200), nullable=False, server_default=""),
        sa.Column("starts_at", sa.Float(), nullable=False),
        sa.Column("ends_at", sa.Float(), nullable=False),
        sa.Column("author", sa.String(200), nullable=False, server_default=""),
        sa.Column("comment", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("cancelled_at", sa.Float(), nullable=True),
        sa.Column("cancelled_by", sa.String(200), nullable=False, server_default=""),
    )
    op.create_index("ix_downtime_host", "downtime", ["host"])
    op.create_index("ix_downtime_ends_at", "downtime", ["ends_at"])


def downgrade() -> None:
    op.drop_index("ix_downtime_ends_at", table_name="downtime")
    op.drop_index("ix_downtime_host", table_name="downtime")
    op.drop_table("downtime")
