"""Retention: old resolved incidents (with their timelines) and old samples move to the
``*_archive`` tables, so that the live tables, their indexes and every query on them
stay small however long poolwarden runs; later, ``prune`` deletes what has been in the
archive longer than wanted, and old notification log rows, so the database does not
grow without bound either.

Each batch is one transaction: INSERT … SELECT into the archive, then DELETE from the
live table, for an explicit list of ids picked (and, on PostgreSQL, locked) first; a
crash loses nothing and moves nothing twice, and running it again is harmless. Open
incidents are never touched: only ``status = 'resolved'`` rows are picked, and a
resolved incident never reopens (a new occurrence is a new incident).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Table, delete, exists, insert, literal, select

from poolwarden.store.db import Store
from poolwarden.store.models import (
    NOTIFY_FAILED,
    NOTIFY_SENT,
    RESOLVED,
    Incident,
    IncidentArchive,
    IncidentEvent,
    IncidentEventArchive,
    Notification,
    Sample,
    SampleArchive,
)

#: well under SQLite's 32,766 bound parameters and psycopg's 65,535
MAX_BATCH = 30_000


def _table(model: Any) -> Table:
    return cast(Table, model.__table__)


INCIDENT, INCIDENT_ARCHIVE = _table(Incident), _table(IncidentArchive)
EVENT, EVENT_ARCHIVE = _table(IncidentEvent), _table(IncidentEventArchive)
SAMPLE, SAMPLE_ARCHIVE = _table(Sample), _table(SampleArchive)
NOTIFICATION = _table(Notification)


@dataclass(frozen=True, slots=True)
class ArchiveStats:
    incidents: int = 0
    events: int = 0
    samples: int = 0
    #: transactions used
    batches: int = 0

    def __add__(self, other: ArchiveStats) -> ArchiveStats:
        return ArchiveStats(self.incidents + other.incidents, self.events + other.events,
                            self.samples + other.samples, self.batches + other.batches)


def _move(conn: Connection, source: Table, target: Table, where: Any,
          extra: dict[str, Any] | None = None) -> int:
    """INSERT INTO target SELECT … FROM source WHERE …, then DELETE them: rows moved."""
    extra = extra or {}
    names = [c.name for c in target.columns]
    cols = [literal(extra[n]) if n in extra else source.c[n] for n in names]
    conn.execute(insert(target).from_select(names, select(*cols).where(where)))
    return conn.execute(delete(source).where(where)).rowcount


def _pick(conn: Connection, table: Table, where: Any, batch: int) -> Sequence[int]:
    q = select(table.c.id).where(where).order_by(table.c.id).limit(batch).with_for_update()
    return conn.execute(q).scalars().all()


def _incident_batch(conn: Connection, cutoff: float, now: float, batch: int) -> ArchiveStats:
    ids = _pick(conn, INCIDENT, (INCIDENT.c.status == RESOLVED)
                & (INCIDENT.c.resolved_at < cutoff), batch)
    if not ids:
        return ArchiveStats()
    # the events first: deleting an incident would cascade to its events
    events = _move(conn, EVENT, EVENT_ARCHIVE, EVENT.c.incident_id.in_(ids))
    moved = _move(conn, INCIDENT, INCIDENT_ARCHIVE, INCIDENT.c.id.in_(ids),
                  {"archived_at": now})
    return ArchiveStats(incidents=moved, events=events, batches=1)


def _sample_batch(conn: Connection, cutoff: float, _now: float, batch: int) -> ArchiveStats:
    ids = _pick(conn, SAMPLE, SAMPLE.c.ts < cutoff, batch)
    if not ids:
        return ArchiveStats()
    moved = _move(conn, SAMPLE, SAMPLE_ARCHIVE, SAMPLE.c.id.in_(ids))
    return ArchiveStats(samples=moved, batches=1)


def archive(store: Store, *, resolved_older_than: float, samples_older_than: float,
            now: float, batch: int = 5000) -> ArchiveStats:
    """Archive incidents resolved more than ``resolved_older_than`` seconds before ``now``
    (with their timelines) and samples older than ``samples_older_than`` seconds."""
    if not 1 <= batch <= MAX_BATCH:
        raise ValueError(f"batch must be within 1..{MAX_BATCH}")
    total = ArchiveStats()
    for step, cutoff in ((_incident_batch, now - resolved_older_than),
                         (_sample_batch, now - samples_older_than)):
        while True:
            with store.engine.begin() as conn:
                done = step(conn, cutoff, now, batch)
            total += done
            if done.incidents + done.samples < batch:
                break
    return total


@dataclass(frozen=True, slots=True)
class PruneStats:
    incidents: int = 0
    events: int = 0
    samples: int = 0
    notifications: int = 0

    def __add__(self, other: PruneStats) -> PruneStats:
        return PruneStats(self.incidents + other.incidents, self.events + other.events,
                          self.samples + other.samples,
                          self.notifications + other.notifications)


def _prune_incidents(conn: Connection, cutoff: float, batch: int) -> PruneStats:
    ids = _pick(conn, INCIDENT_ARCHIVE, INCIDENT_ARCHIVE.c.resolved_at < cutoff, batch)
    if not ids:
        return PruneStats()
    events = conn.execute(delete(EVENT_ARCHIVE).where(
        EVENT_ARCHIVE.c.incident_id.in_(ids))).rowcount
    gone = conn.execute(delete(INCIDENT_ARCHIVE).where(INCIDENT_ARCHIVE.c.id.in_(ids))).rowcount
    return PruneStats(incidents=gone, events=events)


def _prune_samples(conn: Connection, cutoff: float, batch: int) -> PruneStats:
    ids = _pick(conn, SAMPLE_ARCHIVE, SAMPLE_ARCHIVE.c.ts < cutoff, batch)
    if not ids:
        return PruneStats()
    return PruneStats(samples=conn.execute(
        delete(SAMPLE_ARCHIVE).where(SAMPLE_ARCHIVE.c.id.in_(ids))).rowcount)


def _prune_notifications(conn: Connection, cutoff: float, batch: int) -> PruneStats:
    """Finished rows (sent or failed) older than ``cutoff`` — except the last row of each
    group stream: the next group notification's key is derived from it (see
    ``Notifier._ledger_key``), and without it a repeat would look like news."""
    n, later = NOTIFICATION, NOTIFICATION.alias("later")
    superseded = exists().where(later.c.group_key == n.c.group_key,
                                later.c.receiver == n.c.receiver,
                                later.c.channel == n.c.channel, later.c.id > n.c.id)
    ids = _pick(conn, n, (n.c.created_at < cutoff)
                & n.c.status.in_([NOTIFY_SENT, NOTIFY_FAILED])
                & ((n.c.group_key == "") | superseded), batch)
    if not ids:
        return PruneStats()
    return PruneStats(notifications=conn.execute(
        delete(n).where(n.c.id.in_(ids))).rowcount)


def prune(store: Store, *, now: float, archived_incidents: float | None = None,
          archived_samples: float | None = None, notifications: float | None = None,
          batch: int = 5000) -> PruneStats:
    """Delete archived incidents resolved more than ``archived_incidents`` seconds before
    ``now`` (with their timelines), archived samples older than ``archived_samples`` and
    finished notification log rows older than ``notifications``; None keeps them all.
    One transaction per batch, like ``archive``: an interrupted run is simply resumed."""
    if not 1 <= batch <= MAX_BATCH:
        raise ValueError(f"batch must be within 1..{MAX_BATCH}")
    total = PruneStats()
    for step, age in ((_prune_incidents, archived_incidents),
                      (_prune_samples, archived_samples),
                      (_prune_notifications, notifications)):
        if age is None:
            continue
        while True:
            with store.engine.begin() as conn:
                done = step(conn, now - age, batch)
            total += done
            if done.incidents + done.samples + done.notifications < batch:
                break
    return total
