"""Incidents with their timeline, readings history, and the archive twins of all three.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: 64-bit ids where rows pile up fast; SQLite needs INTEGER for its rowid alias
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NOT_RESOLVED = sa.text("status <> 'resolved'")


def _incident_columns() -> list[sa.Column[Any]]:
    """Shared by ``incident`` and ``incident_archive`` (fresh objects at every call)."""
    return [
        sa.Column("dedup_key", sa.String(700), nullable=False),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("pool", sa.String(200), nullable=False),
        sa.Column("check", sa.String(400), nullable=False),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("opened_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("resolved_at", sa.Float(), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("unit", sa.String(20), nullable=False),
        sa.Column("warn", sa.Float(), nullable=True),
        sa.Column("crit", sa.Float(), nullable=True),
        sa.Column("device_status", sa.String(200), nullable=False),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("flapping", sa.Boolean(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("ack_by", sa.String(200), nullable=False),
        sa.Column("ack_comment", sa.Text(), nullable=False),
        sa.Column("ack_at", sa.Float(), nullable=True),
        sa.Column("ack_expires_at", sa.Float(), nullable=True),
        sa.Column("change_count", sa.Integer(), nullable=False),
    ]


def _event_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
    ]


def _sample_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("check", sa.String(400), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("state", sa.SmallInteger(), nullable=False),
    ]


def upgrade() -> None:
    # Live tables: AUTOINCREMENT on SQLite so that an id is never handed out twice (the
    # archive keeps the original ids as its primary keys).
    op.create_table(
        "incident",
        sa.Column("id", sa.Integer(), primary_key=True),
        *_incident_columns(),
        sqlite_autoincrement=True,
    )
    op.create_index("uq_incident_open_dedup_key", "incident", ["dedup_key"], unique=True,
                    sqlite_where=NOT_RESOLVED, postgresql_where=NOT_RESOLVED)
    op.create_index("ix_incident_status_resolved_at", "incident", ["status", "resolved_at"])
    op.create_index("ix_incident_host", "incident", ["host"])
    op.create_table(
        "incident_event",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("incident_id", sa.Integer(),
                  sa.ForeignKey("incident.id", ondelete="CASCADE"), nullable=False),
        *_event_columns(),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_incident_event_incident_id", "incident_event", ["incident_id", "id"])
    op.create_table(
        "sample",
        sa.Column("id", BIG_ID, primary_key=True),
        *_sample_columns(),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_sample_host_check_ts", "sample", ["host", "check", "ts"])
    op.create_index("ix_sample_ts", "sample", ["ts"])

    op.create_table(
        "incident_archive",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        *_incident_columns(),
        sa.Column("archived_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_incident_archive_host", "incident_archive", ["host"])
    op.create_index("ix_incident_archive_resolved_at", "incident_archive", ["resolved_at"])
    op.create_table(
        "incident_event_archive",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        *_event_columns(),
    )
    op.create_index("ix_incident_event_archive_incident_id", "incident_event_archive",
                    ["incident_id", "id"])
    op.create_table(
        "sample_archive",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=False),
        *_sample_columns(),
    )
    op.create_index("ix_sample_archive_host_check_ts", "sample_archive",
                    ["host", "check", "ts"])


def downgrade() -> None:
    for table in ("sample_archive", "incident_event_archive", "incident_archive", "sample",
                  "incident_event", "incident"):
        op.drop_table(table)
