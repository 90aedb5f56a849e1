"""The incident manager: state changes in, durable incidents with an audit trail out.

Most HARD changes the state engine emits for a problem already open repeat what is known,
so the manager keeps an index of open incidents by dedup key in memory (loaded from the
store on first use). Deciding whether a change touches an incident is a dict lookup; the
database is written only when something changes, and a batch is written in one
transaction with one statement per kind of write (insert, update, timeline).

One process handles the state changes (it owns the index); others (the CLI, the API)
only read and act on incidents as people, which never opens or resolves one, so they
cannot make the index stale. Should two handlers race anyway (an HA pair), the partial
unique index on the open dedup key refuses the second open: the batch is rolled back,
the index reloaded from the store and the batch applied again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from poolwarden.errors import NotFound, OperationRefused, TransientError, UsageError
from poolwarden.incidents import lifecycle
from poolwarden.incidents.lifecycle import Action, Event, Row
from poolwarden.incidents.model import (
    SYSTEM_AUTHOR,
    BatchResult,
    EventKind,
    IncidentEventRecord,
    IncidentRecord,
    Severity,
    Status,
    dedup_key,
)
from poolwarden.messages import State, StateChange
from poolwarden.store.db import Store, now
from poolwarden.store.models import (
    Incident,
    IncidentArchive,
    IncidentEvent,
    IncidentEventArchive,
)

INCIDENT = cast(Table, Incident.__table__)
EVENT = cast(Table, IncidentEvent.__table__)
INCIDENT_ARCHIVE = cast(Table, IncidentArchive.__table__)
EVENT_ARCHIVE = cast(Table, IncidentEventArchive.__table__)
_RECORD_FIELDS = tuple(f.name for f in fields(IncidentRecord)
                       if f.name not in ("events", "archived"))


class _Stale(Exception):
    """The index named an incident the store no longer has open."""


@dataclass(slots=True)
class _Entry:
    """What the index knows of an open incident: enough for ``lifecycle.decide``."""

    id: int
    state: State
    flapping: bool


@dataclass(slots=True)
class _Draft:
    """One incident's changes within a batch, in order (``id`` None: opened by it)."""

    key: str
    id: int | None
    state: State
    flapping: bool
    ops: list[tuple[Action, StateChange]] = field(default_factory=list)
    resolved: bool = False
    #: the same problem's incident resolved earlier in this batch (``reopened`` links it)
    previous: _Draft | None = None
    row: Row = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)


def _record(row: Row, events: Sequence[IncidentEventRecord] = (), *,
            archived: bool = False) -> IncidentRecord:
    values = {name: row[name] for name in _RECORD_FIELDS}
    values.update(state=State[row["state"]], status=Status(row["status"]),
                  severity=Severity(row["severity"]), flapping=bool(row["flapping"]))
    return IncidentRecord(**values, events=tuple(events), archived=archived)


class IncidentManager:
    """Opens, updates and resolves incidents; records what people do with them.

    Not thread-safe: the state changes of a process go through one manager in one thread.
    """

    def __init__(self, store: Store, *, reopen_window: float = 3600.0) -> None:
        """``reopen_window``: a problem back within this many seconds of its resolution
        opens a new incident whose timeline starts with ``reopened`` and links the last."""
        self.store = store
        self.reopen_window = reopen_window
        self._open: dict[str, _Entry] | None = None
        #: key -> (id, resolved at) of incidents this process resolved
        self._resolved: dict[str, tuple[int, float]] = {}

    # --- the index ------------------------------------------------------------------

    def _index(self) -> dict[str, _Entry]:
        if self._open is None:
            self.reload()
            assert self._open is not None
        return self._open

    def reload(self) -> None:
        """Read the open incidents from the store (done on first use and after a race)."""
        q = (select(INCIDENT.c.id, INCIDENT.c.dedup_key, INCIDENT.c.state,
                    INCIDENT.c.flapping)
             .where(INCIDENT.c.status != Status.RESOLVED))
        with self.store.session() as s:
            self._open = {key: _Entry(iid, State[state], bool(flapping))
                          for iid, key, state, flapping in s.execute(q)}

    def open_id(self, host: str, check: str) -> int | None:
        """The id of the open incident for this problem, from memory."""
        entry = self._index().get(dedup_key(host, check))
        return entry.id if entry is not None else None

    # --- state changes ----------------------------------------------------------------

    def handle(self, change: StateChange) -> IncidentRecord | None:
        """Apply one change; the incident it opened, updated or resolved, else None."""
        result = self.handle_many((change,))
        return self.get(result.incident_ids[0]) if result.incident_ids else None

    def handle_many(self, changes: Iterable[StateChange]) -> BatchResult:
        """Apply changes in order, writing everything they change in ONE transaction."""
        batch = list(changes)
        for attempt in (1, 2):
            drafts, ignored = self._plan(batch)
            if not drafts:
                return BatchResult(ignored=ignored)
            try:
                ids = self._write(drafts)
            except (IntegrityError, _Stale) as exc:
                self.reload()  # another handler opened or closed one of our keys
                if attempt == 2:
                    raise TransientError(f"incidents could not be written (another "
                                         f"handler kept changing them?): {exc}") from exc
                continue
            self._commit_index(drafts, ids)
            counts = dict.fromkeys(Action, 0)
            for d in drafts:
                for action, _ in d.ops:
                    counts[action] += 1
            return BatchResult(opened=counts[Action.OPEN], updated=counts[Action.UPDATE],
                               resolved=counts[Action.RESOLVE], ignored=ignored,
                               incident_ids=tuple(dict.fromkeys(ids)))
        raise AssertionError("unreachable")  # pragma: no cover

    def _plan(self, batch: list[StateChange]) -> tuple[list[_Draft], int]:
        """Memory only: which changes touch which incidents (the dedup decisions)."""
        index = self._index()
        current: dict[str, _Draft | None] = {}  # keys touched by this batch so far
        resolved: dict[str, _Draft] = {}
        drafts: list[_Draft] = []
        ignored = 0
        for change in batch:
            key = dedup_key(change.host, change.check)
            cur: _Draft | _Entry | None = current[key] if key in current else index.get(key)
            action = lifecycle.decide(cur.state if cur else None,
                                      cur.flapping if cur else False, change)
            if action is Action.IGNORE:
                ignored += 1
                continue
            if cur is None or isinstance(cur, _Entry):
                cur = _Draft(key, cur.id if cur else None, change.new_state, change.flapping,
                             previous=resolved.get(key) if cur is None else None)
                drafts.append(cur)
            cur.ops.append((action, change))
            cur.state, cur.flapping = change.new_state, change.flapping
            cur.resolved = action is Action.RESOLVE
            current[key] = None if cur.resolved else cur
            if cur.resolved:
                resolved[key] = cur
        return drafts, ignored

    def _previous(self, key: str, ts: float) -> int | None:
        last = self._resolved.get(key)
        return last[0] if last is not None and ts - last[1] <= self.reopen_window else None

    def _write(self, drafts: list[_Draft]) -> list[int]:
        """Apply the rules to fresh rows and write: returns each draft's incident id."""
        existing = sorted(d.id for d in drafts if d.id is not None)
        with self.store.session() as s:
            rows: dict[int, Row] = {}
            if existing:  # locked, so that a person's concurrent ack is not lost
                q = (select(INCIDENT).where(INCIDENT.c.id.in_(existing))
                     .order_by(INCIDENT.c.id).with_for_update())
                rows = {r["id"]: dict(r) for r in s.execute(q).mappings()}
            for d in drafts:
                self._apply(d, rows)
            changed = [d.row for d in drafts if d.id is not None]
            new = [d for d in drafts if d.id is None]
            if changed:  # first: a resolution frees its key for an open in this batch
                s.execute(update(Incident), [
                    {"id": row["id"], **{c: row[c] for c in lifecycle.MUTABLE}}
                    for row in changed])
            if new:
                ids = s.scalars(
                    insert(Incident).returning(Incident.id, sort_by_parameter_order=True),
                    [d.row for d in new])
                for iid, d in zip(ids, new, strict=True):
                    d.row["id"] = iid
                for d in new:
                    if d.previous is not None:  # its id is known only now
                        d.events[0]["data"]["previous"] = d.previous.row["id"]
            s.execute(insert(IncidentEvent), [
                {**ev, "incident_id": d.row["id"]} for d in drafts for ev in d.events])
        return [d.row["id"] for d in drafts]

    def _apply(self, d: _Draft, rows: dict[int, Row]) -> None:
        """Run the rules over the draft's changes: fills ``d.row`` and ``d.events``."""
        ops = d.ops
        if d.id is None:
            first = ops[0][1]
            previous = 0 if d.previous is not None else self._previous(d.key, first.ts)
            d.row, ev = lifecycle.open_row(d.key, first, previous=previous)
            d.events.append(ev)
            ops = ops[1:]
        else:
            found = rows.get(d.id)
            if found is None or found["status"] == Status.RESOLVED:
                raise _Stale(d.key)
            d.row = found
        for action, change in ops:
            if action is Action.UPDATE:
                d.events.extend(lifecycle.update_row(d.row, change))
            else:
                d.events.append(lifecycle.resolve_row(d.row, change))

    def _commit_index(self, drafts: list[_Draft], ids: list[int]) -> None:
        """After the commit only, so a failed batch leaves the index as the store is."""
        index = self._index()
        for d, iid in zip(drafts, ids, strict=True):
            if d.resolved:
                index.pop(d.key, None)
                self._resolved[d.key] = (iid, d.ops[-1][1].ts)
            else:
                index[d.key] = _Entry(iid, d.state, d.flapping)

    # --- what people do ---------------------------------------------------------------

    def acknowledge(self, incident_id: int, author: str, comment: str,
                    expires_at: float | None = None) -> IncidentRecord:
        """Somebody knows. Cleared by a worse state, by ``expires_at`` (epoch seconds,
        see ``expire_acknowledgements``) and ended by the resolution."""
        return self._act(incident_id, lambda row, t: lifecycle.acknowledge(
            row, author, comment, t, expires_at))

    def start_progress(self, incident_id: int, author: str) -> IncidentRecord:
        return self._act(incident_id,
                         lambda row, t: lifecycle.start_progress(row, author, t))

    def comment(self, incident_id: int, author: str, text: str) -> IncidentRecord:
        return self._act(incident_id, lambda row, t: lifecycle.comment(row, author, text, t))

    def record_event(self, incident_id: int, kind: str, message: str, *,
                     author: str = SYSTEM_AUTHOR, data: dict[str, Any] | None = None,
                     ) -> IncidentRecord:
        """Add a timeline entry of another stage (e.g. ``remediation_step``); allowed on a
        resolved incident too, since a remediation may outlive its problem. The kinds this
        package writes itself are refused: they carry the lifecycle's meaning."""
        if kind in set(EventKind):
            raise UsageError(f"{kind!r} is a lifecycle event; use the incident's own methods")
        return self._act(incident_id, lambda row, t: lifecycle.event(
            t, kind, message, author=author, data=data))

    def expire_acknowledgements(self, at: float | None = None) -> int:
        """Hand back to ``open`` the acknowledgements expired at ``at``; call it
        periodically (the service's housekeeping). Returns how many expired."""
        t = now() if at is None else at
        with self.store.session() as s:
            q = (select(INCIDENT)
                 .where(INCIDENT.c.status == Status.ACKNOWLEDGED,
                        INCIDENT.c.ack_expires_at <= t)
                 .order_by(INCIDENT.c.id).with_for_update())
            rows = [dict(r) for r in s.execute(q).mappings()]
            for row in rows:
                ev = lifecycle.expire_ack(row, t)
                assert ev is not None
                self._save(s, row, ev)
        return len(rows)

    def _act(self, incident_id: int, fn: Callable[[Row, float], Event]) -> IncidentRecord:
        with self.store.session() as s:
            row = self._row(s, incident_id, lock=True)
            self._save(s, row, fn(row, now()))
            return self._load(s, row)

    @staticmethod
    def _save(s: Session, row: Row, ev: Event) -> None:
        s.execute(update(INCIDENT).where(INCIDENT.c.id == row["id"])
                  .values({c: row[c] for c in lifecycle.MUTABLE}))
        s.execute(insert(EVENT).values(incident_id=row["id"], **ev))

    # --- reading ----------------------------------------------------------------------

    @staticmethod
    def _row(s: Session, incident_id: int, *, lock: bool = False) -> Row:
        q = select(INCIDENT).where(INCIDENT.c.id == incident_id)
        found = s.execute(q.with_for_update() if lock else q).mappings().first()
        if found is None:
            if s.scalar(select(INCIDENT_ARCHIVE.c.id)
                        .where(INCIDENT_ARCHIVE.c.id == incident_id)) is not None:
                raise OperationRefused(f"incident #{incident_id} is archived: it can be "
                                       "read, not changed")
            raise NotFound(f"no incident #{incident_id}")
        return dict(found)

    @staticmethod
    def _load(s: Session, row: Row, *, archived: bool = False) -> IncidentRecord:
        table = EVENT_ARCHIVE if archived else EVENT
        q = select(table).where(table.c.incident_id == row["id"]).order_by(table.c.id)
        events = [IncidentEventRecord(id=e.id, incident_id=e.incident_id, ts=e.ts,
                                      kind=e.kind, author=e.author, message=e.message,
                                      data=e.data or {}) for e in s.execute(q)]
        return _record(row, events, archived=archived)

    def get(self, incident_id: int) -> IncidentRecord:
        """One incident with its whole timeline, from the live table or, once retention
        has moved it, the archive (``archived`` is then set); ``NotFound`` if unknown."""
        with self.store.session() as s:
            found = s.execute(select(INCIDENT).where(INCIDENT.c.id == incident_id)
                              ).mappings().first()
            if found is not None:
                return self._load(s, dict(found))
            found = s.execute(select(INCIDENT_ARCHIVE).where(
                INCIDENT_ARCHIVE.c.id == incident_id)).mappings().first()
            if found is None:
                raise NotFound(f"no incident #{incident_id}")
            return self._load(s, dict(found), archived=True)

    def list(self, status: str | None = None, host: str | None = None,
             severity: str | None = None, limit: int = 100, *,
             archived: bool = False) -> list[IncidentRecord]:
        """Newest first, without timelines (``get`` one for its timeline); ``archived``
        lists the archive instead (resolved incidents retention has moved)."""
        table = INCIDENT_ARCHIVE if archived else INCIDENT
        q = select(table).order_by(table.c.id.desc()).limit(limit)
        if status is not None:
            q = q.where(table.c.status == _one_of(Status, status, "status"))
        if host is not None:
            q = q.where(table.c.host == host)
        if severity is not None:
            q = q.where(table.c.severity == _one_of(Severity, severity, "severity"))
        with self.store.session() as s:
            return [_record(dict(r), archived=archived) for r in s.execute(q).mappings()]

    def open_count(self) -> int:
        """Incidents not resolved, counted in the store (right in any process)."""
        q = select(func.count()).select_from(INCIDENT).where(
            INCIDENT.c.status != Status.RESOLVED)
        with self.store.session() as s:
            return int(s.scalar(q) or 0)


def _one_of(enum: Any, value: str, what: str) -> str:
    try:
        return str(enum(value))
    except ValueError:
        allowed = ", ".join(str(m) for m in enum)
        raise UsageError(f"unknown {what} {value!r} (one of: {allowed})") from None
