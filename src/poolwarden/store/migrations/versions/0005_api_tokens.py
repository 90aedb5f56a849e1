"""API tokens: who may call the HTTP API, and with which role.

Only a SHA-256 digest of each token is stored, with a short prefix of it in clear (the
``token_id``) to find the row without scanning: a stolen database grants no access.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("token_id", sa.String(32), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.UniqueConstraint("token_id", name="uq_api_token_token_id"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("api_token")
