"""The lifecycle rules, as pure functions over an incident row (a dict of its columns).

Kept apart from the manager, which owns the in-memory index and the I/O, so that the
rules read in one place (``docs/incidents.md`` states them for operators) and run
without a database. Each function mutates the row it is given and returns the timeline
entries to write; the manager writes both in the same transaction.

- Only HARD changes count: a SOFT non-OK state is not yet a problem (the check is still
  retrying) and a SOFT recovery does not exist (recovery to OK is immediately HARD).
- HARD non-OK with no open incident for the key opens one (``opened``; ``reopened`` when
  the same problem was resolved less than the manager's ``reopen_window`` ago).
- HARD non-OK for an open incident in another state: ``state_change``. A *worse* state
  hands an acknowledged or in-progress incident back to ``open`` (``unacknowledged``):
  whoever took it took it at the old severity. A better state keeps the acknowledgement.
- Same state, flapping flag toggled: ``updated`` (also when the state engine sends it as
  a non-hard change, as it does for a flapping start/end without a state change). Same
  state and flag: nothing is written (the reading alone changing is history for
  ``samples``, not an incident change).
- HARD OK resolves: ``resolved``; the acknowledgement fields stay as the record of who
  handled it. A resolved incident is final: the next problem is a new incident.
"""

from __future__ import annotations

from dataclasses import asdict
from enum import Enum
from typing import Any

from poolwarden.errors import OperationRefused
from poolwarden.incidents.model import (
    SYSTEM_AUTHOR,
    TAKEN,
    EventKind,
    Status,
    severity_of,
)
from poolwarden.messages import State, StateChange, StateType

Row = dict[str, Any]
#: an ``incident_event`` row without its ids (the manager adds ``incident_id``)
Event = dict[str, Any]

#: the columns the lifecycle rewrites; one bulk UPDATE by primary key sets them all
MUTABLE = ("state", "severity", "status", "updated_at", "resolved_at", "value", "unit",
           "warn", "crit", "device_status", "output", "flapping", "ack_by", "ack_comment",
           "ack_at", "ack_expires_at", "change_count")


class Action(Enum):
    IGNORE = 0
    OPEN = 1
    UPDATE = 2
    RESOLVE = 3


def decide(open_state: State | None, open_flapping: bool, change: StateChange) -> Action:
    """The hot path: what ``change`` does to the key's open incident (None: there is none)."""
    if not change.hard_change:
        # the state engine sends a flapping start/end without a state change as a non-hard
        # change of the same state: note it on the open incident, ignore anything else
        flap_only = (open_state is not None and change.new_state is open_state
                     and change.state_type is StateType.HARD
                     and change.flapping != open_flapping)
        return Action.UPDATE if flap_only else Action.IGNORE
    if change.new_state is State.OK:
        return Action.IGNORE if open_state is None else Action.RESOLVE
    if open_state is None:
        return Action.OPEN
    if change.new_state is open_state and change.flapping == open_flapping:
        return Action.IGNORE
    return Action.UPDATE


def event(ts: float, kind: str, message: str, *, author: str = SYSTEM_AUTHOR,
          data: dict[str, Any] | None = None) -> Event:
    return {"ts": ts, "kind": kind, "author": author, "message": message, "data": data or {}}


def _kind(change: StateChange) -> str:
    """The problem's category: the sensor kind, a ``kind`` label, else the check's prefix."""
    if change.reading is not None:
        return change.reading.kind
    return change.labels.get("kind") or change.check.partition("/")[0]


def _change_data(change: StateChange) -> dict[str, Any]:
    return {
        "old": change.old_state.name, "new": change.new_state.name,
        "state_type": str(change.state_type), "attempt": change.attempt,
        "max_attempts": change.max_attempts, "flapping": change.flapping,
        "reading": asdict(change.reading) if change.reading is not None else None,
    }


def _take_reading(row: Row, change: StateChange) -> None:
    """Keep the latest output and, for sensors, the reading with the device's thresholds."""
    row["output"] = change.output
    row["updated_at"] = change.ts
    r = change.reading
    if r is not None:  # clipped to the columns: one odd value must not fail a whole batch
        row.update(value=r.value, unit=r.unit[:20], warn=r.warn, crit=r.crit,
                   device_status=r.status[:200])


def _note(change: StateChange, text: str) -> str:
    return f"{text} (flapping)" if change.flapping else text


def open_row(key: str, change: StateChange, *, previous: int | None = None,
             ) -> tuple[Row, Event]:
    """A new incident for a HARD non-OK change; ``previous``: the same problem's last one."""
    state = change.new_state
    row: Row = {
        "dedup_key": key, "host": change.host, "pool": change.labels.get("pool", ""),
        "check": change.check, "kind": _kind(change)[:50], "severity": str(severity_of(state)),
        "state": state.name, "status": str(Status.OPEN), "opened_at": change.ts,
        "resolved_at": None, "value": None, "unit": "", "warn": None, "crit": None,
        "device_status": "", "flapping": change.flapping, "labels": dict(change.labels),
        "ack_by": "", "ack_comment": "", "ack_at": None, "ack_expires_at": None,
        "change_count": 1,
    }
    _take_reading(row, change)
    data = _change_data(change)
    if previous is None:
        return row, event(change.ts, EventKind.OPENED,
                          _note(change, f"{state.name}: {change.output}"), data=data)
    data["previous"] = previous
    return row, event(change.ts, EventKind.REOPENED,
                      _note(change, f"{state.name} again: {change.output}"), data=data)


def clear_ack(row: Row, ts: float, reason: str) -> Event:
    """Hand a taken incident back to ``open``; the timeline keeps who had taken it."""
    who = row["ack_by"]
    row.update(status=str(Status.OPEN), ack_by="", ack_comment="", ack_at=None,
               ack_expires_at=None, updated_at=ts)
    return event(ts, EventKind.UNACKNOWLEDGED, f"acknowledgement by {who} cleared: {reason}",
                 data={"was_by": who})


def update_row(row: Row, change: StateChange) -> list[Event]:
    """A HARD non-OK change for the open incident ``row`` (state or flapping differ)."""
    old, new = State[row["state"]], change.new_state
    events: list[Event] = []
    if new is not old:
        row.update(state=new.name, severity=str(severity_of(new)),
                   change_count=row["change_count"] + 1)
        events.append(event(change.ts, EventKind.STATE_CHANGE,
                            _note(change, f"{old.name} → {new.name}: {change.output}"),
                            data=_change_data(change)))
        if new.severity > old.severity and row["status"] in TAKEN:
            events.append(clear_ack(row, change.ts, f"state worsened to {new.name}"))
    if change.flapping != row["flapping"]:
        row["flapping"] = change.flapping
        if new is old:
            events.append(event(change.ts, EventKind.UPDATED,
                                "flapping started" if change.flapping else "flapping stopped",
                                data={"flapping": change.flapping}))
    _take_reading(row, change)
    return events


def resolve_row(row: Row, change: StateChange) -> Event:
    """A HARD OK: the problem is over; the incident is final."""
    row.update(state=State.OK.name, status=str(Status.RESOLVED), resolved_at=change.ts,
               flapping=change.flapping, change_count=row["change_count"] + 1)
    _take_reading(row, change)
    return event(change.ts, EventKind.RESOLVED, _note(change, f"OK: {change.output}"),
                 data=_change_data(change))


# --- what people do ---------------------------------------------------------------------

def _refuse_if_resolved(row: Row, what: str) -> None:
    if row["status"] == Status.RESOLVED:
        raise OperationRefused(
            f"incident #{row['id']} is resolved: it cannot be {what} "
            f"(a new occurrence of the problem opens a new incident)")


def acknowledge(row: Row, author: str, comment: str, ts: float,
                expires_at: float | None = None) -> Event:
    """Somebody knows: notifications stop repeating until a worse state or the expiry."""
    _refuse_if_resolved(row, "acknowledged")
    if expires_at is not None and expires_at <= ts:
        raise OperationRefused(f"the acknowledgement of #{row['id']} would already be expired")
    row.update(status=str(Status.ACKNOWLEDGED), ack_by=author, ack_comment=comment,
               ack_at=ts, ack_expires_at=expires_at, updated_at=ts)
    return event(ts, EventKind.ACKNOWLEDGED, comment, author=author,
                 data={"expires_at": expires_at})


def start_progress(row: Row, author: str, ts: float) -> Event:
    """Somebody works on it: a stronger acknowledgement (no expiry), in ``ack_by``."""
    _refuse_if_resolved(row, "put in progress")
    row.update(status=str(Status.IN_PROGRESS), ack_by=author, ack_at=ts,
               ack_expires_at=None, updated_at=ts)
    return event(ts, EventKind.IN_PROGRESS, f"{author} is working on it", author=author)


def comment(row: Row, author: str, text: str, ts: float) -> Event:
    """A note in the timeline; allowed on resolved incidents too (the post-mortem)."""
    if not text.strip():
        raise OperationRefused("an empty comment says nothing")
    row["updated_at"] = ts
    return event(ts, EventKind.COMMENT, text, author=author)


def expire_ack(row: Row, ts: float) -> Event | None:
    """Clear an acknowledgement whose expiry has passed (None if it has not)."""
    expires = row["ack_expires_at"]
    if row["status"] != Status.ACKNOWLEDGED or expires is None or expires > ts:
        return None
    return clear_ack(row, ts, "expired")
