"""The simulator's object store: refs, records and the event journal.

Each object keeps only its *simulated* values (an overlay); a complete record is the
class's datamodel defaults with the overlay on top. Overlay values are never mutated in
place — every change stores a new value — so an event can keep a shallow copy of the
overlay as its snapshot, and a record can be marshalled outside the lock.

One re-entrant lock guards everything; :attr:`Database.changed` is a condition on it that
``event.from`` waits on.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from poolwarden.lab.xapi.datamodel import Datamodel
from poolwarden.lab.xapi.failure import XapiFailure, new_ref, new_uuid


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    timestamp: float
    cls: str
    operation: str  # add | del | mod
    ref: str
    snapshot: dict[str, Any]  # the object's overlay after the change


class Database:
    """Objects by class and ref, with an event journal of bounded length."""

    def __init__(self, dm: Datamodel, *, max_events: int = 100_000) -> None:
        self.dm = dm
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self._objects: dict[str, dict[str, dict[str, Any]]] = {c: {} for c in dm.classes}
        self._class_of: dict[str, str] = {}
        self._events: deque[Event] = deque(maxlen=max_events)
        self.last_event_id = 0

    # -- objects -------------------------------------------------------------------------

    def create(
        self, cls: str, values: dict[str, Any], *, ref: str | None = None, emit: bool = True,
    ) -> str:
        """Store a new object; returns its ref. ``uuid`` is generated unless given."""
        with self.lock:
            ref = ref or new_ref()
            overlay = {"uuid": new_uuid(), **values}
            self._objects[cls][ref] = overlay
            self._class_of[ref] = cls
            if emit:
                self._emit(cls, "add", ref, overlay)
            return ref

    def destroy(self, cls: str, ref: str, *, emit: bool = True) -> None:
        with self.lock:
            overlay = self.overlay(cls, ref)
            del self._objects[cls][ref]
            del self._class_of[ref]
            if emit:
                self._emit(cls, "del", ref, overlay)

    def overlay(self, cls: str, ref: str) -> dict[str, Any]:
        """The object's simulated values; HANDLE_INVALID [cls, ref] if there is no such object."""
        try:
            return self._objects[cls][ref]
        except KeyError:
            raise XapiFailure("HANDLE_INVALID", cls, ref) from None

    def exists(self, cls: str, ref: str) -> bool:
        return ref in self._objects.get(cls, {})

    def class_of(self, ref: str) -> str | None:
        return self._class_of.get(ref)

    def get(self, cls: str, ref: str, field: str) -> Any:
        """One field: the simulated value, else the datamodel default."""
        overlay = self.overlay(cls, ref)
        if field in overlay:
            return overlay[field]
        return self.dm.defaults(cls)[field]

    def set(self, cls: str, ref: str, **values: Any) -> None:
        """Replace fields of an object and journal one ``mod`` event."""
        with self.lock:
            overlay = self.overlay(cls, ref)
            overlay.update(values)
            self._emit(cls, "mod", ref, overlay)

    def record(self, cls: str, ref: str) -> dict[str, Any]:
        """The complete record: every datamodel field of the class."""
        return {**self.dm.defaults(cls), **self.overlay(cls, ref)}

    def refs(self, cls: str) -> list[str]:
        return list(self._objects[cls])

    def where(self, cls: str, **match: Any) -> list[str]:
        """Refs of ``cls`` whose fields equal ``match``."""
        return [
            ref for ref in self._objects[cls]
            if all(self.get(cls, ref, k) == v for k, v in match.items())
        ]

    def count(self, cls: str) -> int:
        return len(self._objects[cls])

    # -- events --------------------------------------------------------------------------

    def _emit(self, cls: str, operation: str, ref: str, overlay: dict[str, Any]) -> None:
        self.last_event_id += 1
        self._events.append(
            Event(self.last_event_id, time.time(), cls, operation, ref, dict(overlay)),
        )
        self.changed.notify_all()

    def events_after(self, event_id: int) -> list[Event] | None:
        """Events newer than ``event_id``; None when some were already dropped."""
        if event_id >= self.last_event_id:
            return []
        oldest = self._events[0].id if self._events else self.last_event_id + 1
        if event_id + 1 < oldest:
            return None
        return list(itertools.islice(self._events, event_id + 1 - oldest, None))
