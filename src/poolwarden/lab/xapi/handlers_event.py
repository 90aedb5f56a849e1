"""``event.from`` (blocking, coalesced per object) and the non-implicit task messages."""

from __future__ import annotations

import time
from typing import Any

from poolwarden.lab.xapi.db import Database, Event
from poolwarden.lab.xapi.failure import XapiFailure
from poolwarden.lab.xapi.registry import Call, handler

#: Classes whose objects are not journalled (sessions churn with every client).
QUIET = frozenset({"session"})


def _token(event_id: int) -> str:
    return f"{event_id:020d}"


def _wanted(db: Database, classes: list[str]) -> tuple[set[str] | None, set[str]]:
    """(class names or None for all, explicit refs) from ``["vm", "host/OpaqueRef:…", "*"]``."""
    names: set[str] = set()
    refs: set[str] = set()
    for item in classes:
        if item == "*":
            return None, set()
        cls, _, ref = item.partition("/")
        name = db.dm.by_lower.get(cls.lower())
        if name and ref:
            refs.add(ref)
        elif name:
            names.add(name)
    return names, refs


def _wire(db: Database, event: Event, operation: str) -> dict[str, Any]:
    return {
        "id": event.id, "timestamp": f"{event.timestamp:.6f}", "class": event.cls.lower(),
        "operation": operation, "ref": event.ref,
        "snapshot": {**db.dm.defaults(event.cls), **event.snapshot},
    }


def _coalesce(db: Database, events: list[Event]) -> list[dict[str, Any]]:
    """One event per object, as xapi's event.from: its latest state and net operation."""
    last: dict[str, Event] = {}
    added: set[str] = set()
    for e in events:
        last[e.ref] = e
        if e.operation == "add":
            added.add(e.ref)
    out = []
    for e in sorted(last.values(), key=lambda e: e.id):
        op = "del" if e.operation == "del" else "add" if e.ref in added else "mod"
        out.append(_wire(db, e, op))
    return out


@handler("event", "from")
def event_from(call: Call, classes: list[str], token: str, timeout: float) -> dict[str, Any]:
    """Changes since ``token`` to the wanted classes; waits up to ``timeout`` s for one."""
    sim, db = call.sim, call.sim.db
    names, refs = _wanted(db, classes)

    def match(cls: str, ref: str) -> bool:
        return (names is None and cls not in QUIET) or (names is not None and cls in names) \
            or ref in refs

    if token == "":
        # why: an empty token asks for the current state of every wanted object.
        current = [
            {"id": db.last_event_id, "timestamp": f"{time.time():.6f}", "class": cls.lower(),
             "operation": "add", "ref": ref, "snapshot": db.record(cls, ref)}
            for cls in db.dm.classes for ref in db.refs(cls) if match(cls, ref)
        ]
        if current or timeout <= 0:
            return {"events": current, "token": _token(db.last_event_id), "valid_ref_counts": {}}
        since = db.last_event_id
    else:
        try:
            since = int(token.split(",", 1)[0])
        except ValueError:
            raise XapiFailure("EVENT_FROM_TOKEN_PARSE_FAILURE", token) from None
    deadline = time.monotonic() + max(timeout, 0.0)
    while True:
        events = db.events_after(since)
        if events is None:
            raise XapiFailure("EVENTS_LOST")
        matching = [e for e in events if match(e.cls, e.ref)]
        remaining = deadline - time.monotonic()
        if matching or remaining <= 0 or sim.stopping.is_set():
            return {
                "events": _coalesce(db, matching), "token": _token(db.last_event_id),
                "valid_ref_counts": {},
            }
        since = events[-1].id if events else since  # nothing wanted so far: skip them
        db.changed.wait(remaining)  # releases the lock while waiting


@handler("event", "get_current_id")
def get_current_id(call: Call) -> int:
    return call.sim.db.last_event_id


@handler("task", "destroy")
def task_destroy(call: Call, task: str) -> None:
    call.sim.db.destroy("task", task)
