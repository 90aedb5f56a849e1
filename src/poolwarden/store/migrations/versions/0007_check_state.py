"""Check states shared between masters (the distributed mode).

The owner of a partition writes the state engine's record of each check whose state,
attempts or flapping history changed, fenced by its partition lease; a master taking the
partition over restores them, and every master's dashboard reads them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "check_state",
        sa.Column("host", sa.String(200), primary_key=True),
        sa.Column("check", sa.String(400), primary_key=True),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("hard", sa.Boolean(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("flap_bits", sa.Integer(), nullable=False),
        sa.Column("flapping", sa.Boolean(), nullable=False),
        sa.Column("unreach", sa.Integer(), nullable=False),
        sa.Column("last_check", sa.Float(), nullable=False),
        sa.Column("last_change", sa.Float(), nullable=False),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("reading", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_check_state_partition", "check_state", ["partition"])
    op.create_index("ix_check_state_updated_at", "check_state", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_check_state_updated_at", table_name="check_state")
    op.drop_index("ix_check_state_partition", table_name="check_state")
    op.drop_table("check_state")
