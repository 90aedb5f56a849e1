"""Check states in the store: how a partition's checks move between masters.

``save`` is fenced: it writes only while the caller still holds the partition's lease
(same holder, same fencing token, not expired), checked in the same transaction as the
rows. A master that was paused past its lease and wakes up cannot overwrite the newer
states of the master that took over: it gets :class:`LeaseLost` and must stop.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from poolwarden.evaluate.state import SavedCheck
from poolwarden.messages import Reading, State
from poolwarden.store.db import Store, now
from poolwarden.store.lease import LeaseLost
from poolwarden.store.models import CheckStateRow, Lease

_MAX_OUTPUT = 2000
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Fence:
    """The lease a write depends on."""

    lease: str
    holder: str
    token: int


@dataclass(frozen=True, slots=True)
class StoredCheck:
    """A row as readers (restore, dashboards) get it."""

    saved: SavedCheck
    partition: int
    max_attempts: int
    output: str
    reading: Reading | None
    updated_at: float


def _check_fence(s: Session, fence: Fence) -> None:
    row = s.scalars(select(Lease).where(Lease.name == fence.lease).with_for_update()).first()
    if (row is None or row.holder != fence.holder or row.token != fence.token
            or row.expires_at < now()):
        raise LeaseLost(f"lease {fence.lease} is no longer held by {fence.holder}")


def _reading_json(r: Reading | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {"kind": r.kind, "name": r.name, "value": r.value, "unit": r.unit,
            "warn": r.warn, "crit": r.crit, "warn_low": r.warn_low, "crit_low": r.crit_low,
            "status": r.status}


def _reading(doc: dict[str, Any] | None) -> Reading | None:
    if not doc:
        return None
    return Reading(str(doc.get("kind", "")), str(doc.get("name", "")), doc.get("value"),
                   str(doc.get("unit", "")), doc.get("warn"), doc.get("crit"),
                   doc.get("warn_low"), doc.get("crit_low"), str(doc.get("status", "")))


class CheckStates:
    def __init__(self, store: Store) -> None:
        self.store = store

    def save(self, partition: int,
             rows: Sequence[tuple[SavedCheck, int, str, Reading | None]],
             fence: Fence | None) -> int:
        """Upsert ``(saved, max_attempts, output, reading)`` rows of one partition;
        fenced unless ``fence`` is None (a single process owns everything)."""
        if not rows:
            return 0
        t = now()
        values = [{
            "host": sv.host, "check": sv.check, "partition": partition,
            "state": int(sv.state), "hard": sv.hard, "attempt": sv.attempt,
            "max_attempts": max_attempts, "flap_bits": sv.flap_bits, "flapping": sv.flapping,
            "unreach": sv.unreach, "last_check": sv.last_check,
            "last_change": sv.last_change, "output": output[:_MAX_OUTPUT].replace("\x00", ""),
            "reading": _reading_json(reading), "updated_at": t,
        } for sv, max_attempts, output, reading in rows]
        dialect = self.store.engine.dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        with self.store.session() as s:
            if fence is not None:
                _check_fence(s, fence)
            for i in range(0, len(values), _CHUNK):
                stmt = insert(CheckStateRow).values(values[i:i + _CHUNK])
                keep = {"host", "check"}
                stmt = stmt.on_conflict_do_update(
                    index_elements=["host", "check"],
                    set_={c: stmt.excluded[c] for c in values[0] if c not in keep})
                s.execute(stmt)
        return len(values)

    def load(self, partitions: Iterable[int] | None = None, *,
             since: float | None = None) -> list[StoredCheck]:
        """Rows of ``partitions`` (all when None) written at or after ``since``. Core
        rows, not ORM objects: a dashboard reads 15,000 of them."""
        t = CheckStateRow.__table__
        q = select(t)
        if partitions is not None:
            q = q.where(t.c.partition.in_(list(partitions)))
        if since is not None:
            q = q.where(t.c.updated_at >= since)
        with self.store.engine.connect() as conn:
            return [StoredCheck(
                SavedCheck(r.host, r.check, State(r.state), r.hard, r.attempt, r.flap_bits,
                           r.flapping, r.unreach, r.last_check, r.last_change),
                r.partition, r.max_attempts, r.output, _reading(r.reading), r.updated_at)
                for r in conn.execute(q)]

    def forget_hosts(self, hosts: Iterable[str]) -> None:
        """Drop the rows of hosts that are no longer monitored."""
        with self.store.session() as s:
            s.execute(delete(CheckStateRow).where(CheckStateRow.host.in_(list(hosts))))


__all__ = ["CheckStates", "Fence", "StoredCheck"]
