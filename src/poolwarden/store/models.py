"""SQLAlchemy tables. Schema changes go through Alembic (``store/migrations``).

Timestamps are stored as UTC epoch seconds (float): portable between SQLite and
PostgreSQL, sortable, and free of time-zone ambiguity.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
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


# --- incidents (migration 0002) ----------------------------------------------------------
# Live tables stay small: old resolved incidents, their events and old samples move to the
# ``*_archive`` twins (``incidents.retention``). The twins share the column mixins below,
# so a column added to one is added to both. Ids never repeat (SQLite AUTOINCREMENT,
# PostgreSQL sequences), which lets the archive keep the original ids as primary keys.

#: ``status`` values of a problem still being worked on; the partial unique index below
#: allows one such incident per dedup key
RESOLVED = "resolved"
_NOT_RESOLVED = text(f"status <> '{RESOLVED}'")
#: 64-bit ids where rows pile up fast, plain INTEGER on SQLite (its rowid alias)
BigId = BigInteger().with_variant(Integer(), "sqlite")


class _IncidentColumns:
    """Columns of ``incident`` and ``incident_archive``."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: ``host|check``: what makes two state changes the same problem
    dedup_key: Mapped[str] = mapped_column(String(700))
    host: Mapped[str] = mapped_column(String(200))
    pool: Mapped[str] = mapped_column(String(200), default="")
    check: Mapped[str] = mapped_column(String(400))
    kind: Mapped[str] = mapped_column(String(50))
    #: warning | critical | unknown (of the latest problem state)
    severity: Mapped[str] = mapped_column(String(20))
    #: State name: WARNING | CRITICAL | UNKNOWN, OK once resolved
    state: Mapped[str] = mapped_column(String(20))
    #: open | in_progress | acknowledged | resolved
    status: Mapped[str] = mapped_column(String(20))
    opened_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    resolved_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: the latest reading (hardware sensors) with the device's own thresholds and verdict
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    unit: Mapped[str] = mapped_column(String(20), default="")
    warn: Mapped[float | None] = mapped_column(Float, nullable=True)
    crit: Mapped[float | None] = mapped_column(Float, nullable=True)
    device_status: Mapped[str] = mapped_column(String(200), default="")
    output: Mapped[str] = mapped_column(Text, default="")
    flapping: Mapped[bool] = mapped_column(default=False)
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    ack_by: Mapped[str] = mapped_column(String(200), default="")
    ack_comment: Mapped[str] = mapped_column(Text, default="")
    ack_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    ack_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: how many state changes the problem went through (1 when opened)
    change_count: Mapped[int] = mapped_column(Integer, default=1)


class Incident(_IncidentColumns, Base):
    """One problem (host + check) from its first HARD non-OK state to its recovery."""

    __tablename__ = "incident"
    __table_args__ = (
        Index("uq_incident_open_dedup_key", "dedup_key", unique=True,
              sqlite_where=_NOT_RESOLVED, postgresql_where=_NOT_RESOLVED),
        Index("ix_incident_status_resolved_at", "status", "resolved_at"),
        Index("ix_incident_host", "host"),
        {"sqlite_autoincrement": True},
    )

    events: Mapped[list[IncidentEvent]] = relationship(
        back_populates="incident", order_by="IncidentEvent.id",
        cascade="all, delete-orphan", passive_deletes=True,
    )


class IncidentArchive(_IncidentColumns, Base):
    """A resolved incident moved out of the live table, with its original id."""

    __tablename__ = "incident_archive"
    __table_args__ = (Index("ix_incident_archive_host", "host"),
                      Index("ix_incident_archive_resolved_at", "resolved_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    archived_at: Mapped[float] = mapped_column(Float)


class _IncidentEventColumns:
    """Columns of ``incident_event`` and ``incident_event_archive``: the audit trail."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ts: Mapped[float] = mapped_column(Float)
    #: opened | reopened | state_change | updated | acknowledged | unacknowledged |
    #: comment | in_progress | resolved | free kinds (remediation_step, ...)
    kind: Mapped[str] = mapped_column(String(50))
    #: ``poolwarden`` for the engine's own entries, else the person (``cli:user@host``)
    author: Mapped[str] = mapped_column(String(200), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class IncidentEvent(_IncidentEventColumns, Base):
    """One entry of an incident's timeline."""

    __tablename__ = "incident_event"
    __table_args__ = (Index("ix_incident_event_incident_id", "incident_id", "id"),
                      {"sqlite_autoincrement": True})

    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"))
    incident: Mapped[Incident] = relationship(back_populates="events")


class IncidentEventArchive(_IncidentEventColumns, Base):
    __tablename__ = "incident_event_archive"
    __table_args__ = (Index("ix_incident_event_archive_incident_id", "incident_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    incident_id: Mapped[int] = mapped_column(Integer)


class _SampleColumns:
    """Columns of ``sample`` and ``sample_archive``: one reading of one check."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    check: Mapped[str] = mapped_column(String(400))
    ts: Mapped[float] = mapped_column(Float)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: the State's int (exit code)
    state: Mapped[int] = mapped_column(SmallInteger)


class Sample(_SampleColumns, Base):
    """Readings history for charts; written in batches by ``incidents.samples``."""

    __tablename__ = "sample"
    __table_args__ = (Index("ix_sample_host_check_ts", "host", "check", "ts"),
                      Index("ix_sample_ts", "ts"),  # retention picks by age alone
                      {"sqlite_autoincrement": True})


class SampleArchive(_SampleColumns, Base):
    __tablename__ = "sample_archive"
    __table_args__ = (Index("ix_sample_archive_host_check_ts", "host", "check", "ts"),
                      Index("ix_sample_archive_ts", "ts"))  # pruning picks by age alone

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)


# --- notifications (migration 0003) ------------------------------------------------------

#: ``Notification.status`` values
NOTIFY_SENDING, NOTIFY_SENT, NOTIFY_FAILED, NOTIFY_HELD = "sending", "sent", "failed", "held"


class Notification(Base):
    """One message to one channel of one receiver: the notifier's idempotency ledger.

    The row is written *before* sending; the unique (key, receiver, channel) makes a
    second attempt — a restart, a second master — find it and not send again once it is
    ``sent``. ``not_before`` is the row's lease: a ``sending`` row is its sender's until
    then (after that a crashed sender's row may be taken over), a ``held`` row waits for
    the end of quiet hours. ``channel`` is the redacted URL: no secret is ever stored.
    """

    __tablename__ = "notification"
    __table_args__ = (
        UniqueConstraint("key", "receiver", "channel", name="uq_notification_key_receiver_channel"),
        Index("ix_notification_status_not_before", "status", "not_before"),
        Index("ix_notification_chain", "group_key", "receiver", "channel", "id"),
        Index("ix_notification_created_at", "created_at"),  # pruning picks by age
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(400))
    #: the group stream a grouped notification belongs to ("" for messages): the key of
    #: the previous row of a stream is part of the next one's (see ``notify.notifier``)
    group_key: Mapped[str] = mapped_column(String(400), default="")
    receiver: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(500))
    severity: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text)
    #: sending | sent | failed | held
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float)
    sent_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    not_before: Mapped[float | None] = mapped_column(Float, nullable=True)


# --- API tokens (migration 0005) ---------------------------------------------------------


class ApiToken(Base):
    """A bearer token of the HTTP API (``api.auth``): its role and a digest, never itself.

    ``token_id`` is the token's first characters, kept in clear so that a request finds
    its row by an indexed lookup; the rest of the token is only known to its holder.
    """

    __tablename__ = "api_token"
    __table_args__ = (UniqueConstraint("token_id", name="uq_api_token_token_id"),
                      {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_id: Mapped[str] = mapped_column(String(32))
    #: hex SHA-256 of the whole token
    digest: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    #: viewer | operator | admin
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)


# --- script runs (migration 0004) ----------------------------------------------------------

#: ``ScriptRun.status`` values
SCRIPT_OK, SCRIPT_FAILED, SCRIPT_REFUSED, SCRIPT_TIMEOUT = "ok", "failed", "refused", "timeout"


class ScriptRun(Base):
    """One XESCRIPT batch job asked for: run, failed, timed out, or refused before running.

    Refusals are recorded too (with the arguments as given, JSON-escaped): an attempt to
    slip a ``;`` past the validation is exactly what an auditor wants to see.
    """

    __tablename__ = "script_run"
    __table_args__ = (Index("ix_script_run_started_at", "started_at"),
                      Index("ix_script_run_host", "host"),
                      {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: the person or channel that asked (``cli:user@host``, ``chat:nick``)
    who: Mapped[str] = mapped_column(String(200))
    host: Mapped[str] = mapped_column(String(300))
    script: Mapped[str] = mapped_column(String(300))
    args: Mapped[list[str]] = mapped_column(JSON, default=list)
    started_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    exit_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: ok | failed | refused | timeout
    status: Mapped[str] = mapped_column(String(20))
    output: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(Text, default="")


# --- dashboard users and browser sessions (migration 0006) ---------------------------------


class WebUser(Base):
    """A person who logs in to the dashboard (``api.users``): a name, a role and a salted
    scrypt hash of the password — never the password."""

    __tablename__ = "web_user"
    __table_args__ = (UniqueConstraint("name", name="uq_web_user_name"),
                      {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: lower case (``api.users.normalise_name``): "Alice" and "alice" are one person
    name: Mapped[str] = mapped_column(String(64))
    #: viewer | operator | admin
    role: Mapped[str] = mapped_column(String(20))
    #: ``scrypt$<log2 n>$<r>$<p>$<salt>$<hash>`` (base64 parts)
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[float] = mapped_column(Float)
    disabled_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class WebSession(Base):
    """A browser login (``api.web.sessions``). ``id`` is the SHA-256 of the cookie's random
    secret: a leaked table cannot be replayed as cookies."""

    __tablename__ = "web_session"
    __table_args__ = (Index("ix_web_session_user_id", "user_id"),
                      Index("ix_web_session_expires_at", "expires_at"))

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("web_user.id", ondelete="CASCADE"))
    #: the synchronizer token every state-changing request of this session must carry
    csrf: Mapped[str] = mapped_column(String(64))
    #: the client address at login (for the audit log and ``user list``)
    address: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float)
    #: absolute end (``api.session_max`` after login); idle expiry uses ``last_seen``
    expires_at: Mapped[float] = mapped_column(Float)


# --- the distributed mode (migration 0007) ---------------------------------------------


class CheckStateRow(Base):
    """The state engine's record of one check, written by its partition's owner."""

    __tablename__ = "check_state"

    host: Mapped[str] = mapped_column(String(200), primary_key=True)
    check: Mapped[str] = mapped_column(String(400), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, index=True)
    state: Mapped[int] = mapped_column(SmallInteger)
    hard: Mapped[bool] = mapped_column()
    attempt: Mapped[int] = mapped_column(Integer)
    max_attempts: Mapped[int] = mapped_column(Integer)
    flap_bits: Mapped[int] = mapped_column(Integer)
    flapping: Mapped[bool] = mapped_column()
    unreach: Mapped[int] = mapped_column(Integer)
    last_check: Mapped[float] = mapped_column(Float)
    last_change: Mapped[float] = mapped_column(Float)
    output: Mapped[str] = mapped_column(Text)
    #: the sensor reading at the last write (kind, value, thresholds, device status)
    reading: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[float] = mapped_column(Float, index=True)


# --- single-use confirmations (migration 0008) ---------------------------------------------


class UsedConfirmation(Base):
    """A confirmation already used (a Slack Confirm or Cancel button): its nonce, so that
    no process sharing the store — another master, this one after a restart — takes it
    again (``store.confirmations``)."""

    __tablename__ = "used_confirmation"

    nonce: Mapped[str] = mapped_column(String(200), primary_key=True)
    #: the confirmation's own expiry; the row is pruned some time after it
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    used_at: Mapped[float] = mapped_column(Float)
    #: who used it (``slack:<user id> (<name>)``), for the record
    used_by: Mapped[str] = mapped_column(String(200), default="")


class Downtime(Base):
    """Planned work on a host: its alerts notify nobody meanwhile (``store.downtimes``)."""

    __tablename__ = "downtime"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(String(255), index=True)
    #: "" for every check of the host, else a case-sensitive glob of check names
    check: Mapped[str] = mapped_column(String(200), default="")
    starts_at: Mapped[float] = mapped_column(Float)
    ends_at: Mapped[float] = mapped_column(Float, index=True)
    author: Mapped[str] = mapped_column(String(200), default="")
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float)
    cancelled_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    cancelled_by: Mapped[str] = mapped_column(String(200), default="")
