"""What callers get from the incidents package: plain frozen records, never ORM objects.

The vocabulary (statuses, severities, timeline kinds) is spelled here once, as StrEnums,
so that the store, the CLI, the API and notify compare against the same values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from poolwarden.messages import State

#: the author of the entries the engine writes itself (opened, state_change, resolved…)
SYSTEM_AUTHOR = "poolwarden"


class Status(StrEnum):
    """Where a person stands with a problem; only ``resolved`` is final."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"


class EventKind(StrEnum):
    """Timeline entry kinds written by this package; other stages add free kinds."""

    OPENED = "opened"
    REOPENED = "reopened"  # opened again soon after the same problem was resolved
    STATE_CHANGE = "state_change"
    UPDATED = "updated"  # same state, something else changed (the flapping flag)
    ACKNOWLEDGED = "acknowledged"
    UNACKNOWLEDGED = "unacknowledged"
    COMMENT = "comment"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"


#: statuses in which somebody has taken the problem (notifications stop repeating)
TAKEN = frozenset({Status.ACKNOWLEDGED, Status.IN_PROGRESS})


def severity_of(state: State) -> Severity:
    """The severity of a problem state; OK has none (a resolved incident keeps its last)."""
    if state is State.CRITICAL:
        return Severity.CRITICAL
    if state is State.WARNING:
        return Severity.WARNING
    if state is State.UNKNOWN:
        return Severity.UNKNOWN
    raise ValueError("OK is not a problem state")


def dedup_key(host: str, check: str) -> str:
    """What makes two state changes the same problem: the host and the check's stable id.

    ``|`` cannot occur in a host name, so the key is unambiguous.
    """
    return f"{host}|{check}"


@dataclass(frozen=True, slots=True)
class IncidentEventRecord:
    """One timeline entry."""

    id: int
    incident_id: int
    ts: float
    kind: str
    author: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "ts": self.ts, "kind": self.kind, "author": self.author,
                "message": self.message, "data": self.data}


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    """An incident as stored; ``events`` (the timeline, oldest first) may be left empty
    by listings, see ``IncidentManager.list``."""

    id: int
    dedup_key: str
    host: str
    pool: str
    check: str
    kind: str
    severity: Severity
    state: State
    status: Status
    opened_at: float
    updated_at: float
    resolved_at: float | None
    value: float | None
    unit: str
    warn: float | None
    crit: float | None
    device_status: str
    output: str
    flapping: bool
    labels: dict[str, str]
    ack_by: str
    ack_comment: str
    ack_at: float | None
    ack_expires_at: float | None
    change_count: int
    events: tuple[IncidentEventRecord, ...] = ()
    #: moved to the archive by retention: read-only (see ``incidents.retention``)
    archived: bool = False

    @property
    def acknowledged(self) -> bool:
        """Somebody has taken the problem (acknowledged it or is working on it)."""
        return self.status in TAKEN

    def to_json(self, *, timeline: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.id, "dedup_key": self.dedup_key, "host": self.host, "pool": self.pool,
            "check": self.check, "kind": self.kind, "severity": str(self.severity),
            "state": self.state.name, "status": str(self.status),
            "opened_at": self.opened_at, "updated_at": self.updated_at,
            "resolved_at": self.resolved_at,
            "reading": {"value": self.value, "unit": self.unit, "warn": self.warn,
                        "crit": self.crit, "device_status": self.device_status},
            "output": self.output, "flapping": self.flapping, "labels": self.labels,
            "ack": {"by": self.ack_by, "comment": self.ack_comment, "at": self.ack_at,
                    "expires_at": self.ack_expires_at} if self.ack_at is not None else None,
            "change_count": self.change_count, "archived": self.archived,
        }
        if timeline:
            doc["timeline"] = [e.to_json() for e in self.events]
        return doc


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What ``IncidentManager.handle_many`` did with a batch of state changes."""

    opened: int = 0
    updated: int = 0
    resolved: int = 0
    ignored: int = 0
    #: incidents written by the batch, in the order they were first touched
    incident_ids: tuple[int, ...] = ()

    @property
    def written(self) -> int:
        return self.opened + self.updated + self.resolved
