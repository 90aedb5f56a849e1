"""Script runs: the audit record of every XESCRIPT batch job and every refusal.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

#: 64-bit ids where rows pile up fast; SQLite needs INTEGER for its rowid alias
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "script_run",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("who", sa.String(200), nullable=False),
        sa.Column("host", sa.String(300), nullable=False),
        sa.Column("script", sa.String(300), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("exit_status", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_script_run_started_at", "script_run", ["started_at"])
    op.create_index("ix_script_run_host", "script_run", ["host"])


def downgrade() -> None:
    op.drop_table("script_run")
