"""Scheduled downtimes: planned work during which a host's problems page nobody.

Icinga calls them downtimes, Alertmanager silences, Zabbix maintenance periods. One
downtime covers a host's checks (``check`` empty) or those matching ``check``, a
case-sensitive glob (``snmp/temperature/*``), from ``starts_at`` to ``ends_at``.

What it changes is decided here, once, for every process sharing the store:

- the notifier holds back the alerts it covers: nothing fires, repeats or escalates for
  them while it lasts. A problem still there when it ends notifies as a new one would.
  A problem that was notified before it began still gets its "resolved" notification.
- checks still run, states and incidents are still recorded (the board marks them), and
  remediation still acts: a host that overheats during planned work is still evacuated,
  because protecting the VMs is not noise.

Times are epoch seconds. A downtime ends by itself or is cancelled (kept, for the record);
rows ended long ago are pruned with the other history (``incidents.retention``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy import delete, or_, select

from poolwarden.errors import NotFound, OperationRefused, UsageError
from poolwarden.store.db import Store, now
from poolwarden.store.models import Downtime

#: the longest downtime accepted: a typo must not silence a host for years
MAX_LENGTH = 366 * 86400.0
HOST_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,252}")
#: a check name or glob: printable, one line
CHECK_RE = re.compile(r"[^\x00-\x1f\x7f]{1,200}")
MAX_COMMENT = 1000


@dataclass(frozen=True, slots=True)
class DowntimeRecord:
    id: int
    host: str
    check: str  # "" for every check of the host, else a glob
    starts_at: float
    ends_at: float
    author: str
    comment: str
    created_at: float
    cancelled_at: float | None = None
    cancelled_by: str = ""

    def active(self, t: float) -> bool:
        return self.cancelled_at is None and self.starts_at <= t < self.ends_at

    def covers(self, host: str, check: str, t: float) -> bool:
        return (self.active(t) and host == self.host
                and (not self.check or fnmatchcase(check, self.check)))

    def to_json(self, t: float | None = None) -> dict[str, Any]:
        t = now() if t is None else t
        state = ("cancelled" if self.cancelled_at is not None else
                 "ended" if t >= self.ends_at else
                 "active" if t >= self.starts_at else "scheduled")
        return {"id": self.id, "host": self.host, "check": self.check or None,
                "starts_at": self.starts_at, "ends_at": self.ends_at, "state": state,
                "author": self.author, "comment": self.comment,
                "created_at": self.created_at, "cancelled_at": self.cancelled_at,
                "cancelled_by": self.cancelled_by or None}


def covering(downtimes: Iterable[DowntimeRecord], host: str, check: str,
             t: float) -> DowntimeRecord | None:
    """The downtime covering ``host``/``check`` at ``t`` (the one ending last), if any."""
    found = [d for d in downtimes if d.covers(host, check, t)]
    return max(found, key=lambda d: (d.ends_at, d.id)) if found else None


def _record(r: Downtime) -> DowntimeRecord:
    return DowntimeRecord(r.id, r.host, r.check, r.starts_at, r.ends_at, r.author, r.comment,
                          r.created_at, r.cancelled_at, r.cancelled_by)


class Downtimes:
    """The ``downtime`` table. Blocking: call it from worker threads."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def schedule(self, host: str, *, ends_at: float, starts_at: float | None = None,
                 check: str = "", author: str = "", comment: str = "") -> DowntimeRecord:
        """A new downtime; :class:`UsageError` naming what is wrong with it."""
        t = now()
        starts = t if starts_at is None else starts_at
        if not HOST_RE.fullmatch(host):
            raise UsageError(f"bad host name {host[:80]!r}")
        if check and not CHECK_RE.fullmatch(check):
            raise UsageError("bad check: one printable line of at most 200 characters")
        if len(comment) > MAX_COMMENT:
            raise UsageError(f"comment too long (at most {MAX_COMMENT} characters)")
        if ends_at <= t:
            raise UsageError("this downtime would already be over")
        if ends_at <= starts:
            raise UsageError("a downtime must end after it starts")
        if ends_at - starts > MAX_LENGTH:
            raise UsageError("a downtime lasts at most 366 days")
        row = Downtime(host=host, check=check, starts_at=starts, ends_at=ends_at,
                       author=author[:200], comment=comment, created_at=t)
        with self.store.session() as s:
            s.add(row)
            s.flush()
            return _record(row)

    def get(self, downtime_id: int) -> DowntimeRecord:
        with self.store.session() as s:
            row = s.get(Downtime, downtime_id)
            if row is None:
                raise NotFound(f"no downtime #{downtime_id}")
            return _record(row)

    def cancel(self, downtime_id: int, who: str) -> DowntimeRecord:
        """End a downtime now (or drop a future one); the record stays."""
        t = now()
        with self.store.session() as s:
            row = s.get(Downtime, downtime_id, with_for_update=True)
            if row is None:
                raise NotFound(f"no downtime #{downtime_id}")
            if row.cancelled_at is not None:
                raise OperationRefused(f"downtime #{downtime_id} was already cancelled "
                                       f"by {row.cancelled_by or 'someone'}")
            if row.ends_at <= t:
                raise OperationRefused(f"downtime #{downtime_id} is already over")
            row.cancelled_at, row.cancelled_by = t, who[:200]
            s.flush()
            return _record(row)

    def current(self, t: float | None = None, *, host: str | None = None,
                ) -> list[DowntimeRecord]:
        """Active and future downtimes (not cancelled, not ended), soonest first."""
        t = now() if t is None else t
        q = (select(Downtime).where(Downtime.cancelled_at.is_(None), Downtime.ends_at > t)
             .order_by(Downtime.starts_at, Downtime.id))
        if host is not None:
            q = q.where(Downtime.host == host)
        with self.store.session() as s:
            return [_record(r) for r in s.scalars(q)]

    def recent(self, limit: int = 100, *, host: str | None = None) -> list[DowntimeRecord]:
        """Every downtime, ended and cancelled ones too, newest first."""
        q = select(Downtime).order_by(Downtime.id.desc()).limit(limit)
        if host is not None:
            q = q.where(Downtime.host == host)
        with self.store.session() as s:
            return [_record(r) for r in s.scalars(q)]

    def prune(self, before: float) -> int:
        """Forget downtimes that ended, or were cancelled, before ``before``."""
        with self.store.session() as s:
            done = s.execute(delete(Downtime).where(or_(
                Downtime.ends_at < before, Downtime.cancelled_at < before)))
            return int(getattr(done, "rowcount", 0) or 0)


__all__ = ["MAX_LENGTH", "DowntimeRecord", "Downtimes", "covering"]
