"""SQLAlchemy tables. Schema changes go through Alembic (``store/migrations``).

Timestamps are stored as UTC epoch seconds (float): portable between SQLite and
PostgreSQL, sortable, and free of time-zone ambiguity.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Remediation(Base):
    """One remediation of one host (a maintenance, an evacuation...): the journal's head."""

    __tablename__ = "remediation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pool: Mapped[str] = mapped_column(String(200), index=True)
    host: Mapped[str] = mapped_column(String(200))  # host ref
    host_name: Mapped[str] = mapped_column(String(200))
    goal: Mapped[str] = mapped_column(String(50))
    #: planned | running | done | failed | infeasible | rolled_back
    status: Mapped[str] = mapped_column(String(20), index=True)
    dry_run: Mapped[bool] = mapped_column(default=False)
    requested_by: Mapped[str] = mapped_column(String(200), default="")
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: the host's ``enabled`` flag before we touched it, so rollback restores only our change
    host_was_enabled: Mapped[bool] = mapped_column(default=True)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)

    steps: Mapped[list[RemediationStep]] = relationship(
        back_populates="remediation", order_by="RemediationStep.seq",
        cascade="all, delete-orphan",
    )


class RemediationStep(Base):
    """One step of a remediation, written before it starts and after it ends."""

    __tablename__ = "remediation_step"
    __table_args__ = (UniqueConstraint("remediation_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    remediation_id: Mapped[int] = mapped_column(ForeignKey("remediation.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(50))
    title: Mapped[str] = mapped_column(String(400))
    #: pending | running | done | skipped | failed
    status: Mapped[str] = mapped_column(String(20))
    #: the hypervisor task following this step (a migration), so a restart can re-attach
    task_ref: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)

    remediation: Mapped[Remediation] = relationship(back_populates="steps")


class Lease(Base):
    """A named exclusive lease with a fencing token (e.g. ``pool:prod-a``)."""

    __tablename__ = "lease"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    #: grows by one at every acquisition: a stale holder's writes can be told apart
    token: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[float] = mapped_column(Float)
