"""The notifier: grouping (pure) → idempotent claim (store) → delivery (channels).

Stages, as in Alertmanager: wait (``Grouper``) → dedup (a ``notification`` row claimed
*before* sending: a key already ``sent`` to a channel is never sent again, whether by a
restarted process or a second master) → retry (``channels.deliver``) → record (the row
becomes ``sent`` or ``failed`` with a scrubbed error).

Every channel is delivered by its own task, so ``tick()`` returns at once and a dead
mail relay never delays a page. The store is blocking SQLAlchemy: touched only from
worker threads (``asyncio.to_thread``), like the rest of the service.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from poolwarden.errors import PoolwardenError
from poolwarden.messages import Alert, Message
from poolwarden.notify.channels import (
    AppriseSender,
    Delivery,
    RetryPolicy,
    Sender,
    Target,
    build_targets,
    deliver,
    scrub,
)
from poolwarden.notify.config import CRITICAL, NotifyConfig
from poolwarden.notify.grouping import Grouper
from poolwarden.notify.render import notify_type, render
from poolwarden.notify.router import route
from poolwarden.store.db import Store
from poolwarden.store.downtimes import DowntimeRecord, Downtimes, covering
from poolwarden.store.models import (
    NOTIFY_FAILED,
    NOTIFY_HELD,
    NOTIFY_SENDING,
    NOTIFY_SENT,
    Notification,
)

log = logging.getLogger("poolwarden.notify")
Clock = Callable[[], float]


# --- the ledger ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SentRecord:
    """One delivery as recorded (channel redacted), newest first from ``Notifier.sent``."""

    id: int
    key: str
    receiver: str
    channel: str
    severity: str
    subject: str
    status: str  # sending | sent | failed | held
    attempts: int
    error: str
    ts: float  # sent_at, else created_at

    @property
    def scheme(self) -> str:
        return self.channel.partition("://")[0]


def _fit(key: str, limit: int = 400) -> str:
    """Keys longer than the column keep a readable head and a digest of the whole."""
    if len(key) <= limit:
        return key
    return key[: limit - 41] + "#" + hashlib.sha256(key.encode()).hexdigest()[:40]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class _Note:
    """One notification, the same for each of its channels."""

    key: str  # a message's key, or a group notification's content key
    chain: str  # "" for messages; the group stream (see ``Notifier._ledger_key``)
    severity: str
    subject: str
    body: str
    ntype: str


@dataclass(frozen=True, slots=True)
class _Job:
    target: Target
    hold_until: float | None = None


class Notifier:
    """Routes, groups, de-duplicates and delivers alerts and messages (module docstring)."""

    def __init__(self, config: NotifyConfig, store: Store, *, clock: Clock = time.time,
                 sender: Sender | None = None, downtime_refresh: float = 5.0) -> None:
        self.config, self.store, self.clock = config, store, clock
        self.targets = build_targets(config.receivers)
        self._by_channel = {(t.receiver, t.channel): t for ts in self.targets.values() for t in ts}
        self._apprise: AppriseSender | None = None
        if sender is None:  # the real thing; bad URLs fail here, at start-up
            sender = self._apprise = AppriseSender(
                [t.url for t in self._by_channel.values()], interval=config.send_interval)
        self._send: Sender = sender
        self.policy = RetryPolicy(attempts=config.send_attempts, backoff=config.send_backoff,
                                  timeout=config.send_timeout)
        #: a sender that died mid-send leaves its row to others after this long: every
        #: attempt and back-off, plus time queued behind other sends on the same channel
        self.claim_ttl = self.policy.attempts * (self.policy.timeout + self.policy.max_backoff)
        self.claim_ttl += 600.0
        self.grouper = Grouper(config, muted=self._muted)
        #: the store's downtimes as last read, re-read every ``downtime_refresh`` seconds
        self.downtimes: list[DowntimeRecord] = []
        self.downtime_refresh = downtime_refresh
        self._downtimes_read: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._tick = asyncio.Lock()
        self._logged: dict[str, tuple[float, bool]] = {}  # unrouted alerts: state logged

    # -- inputs ---------------------------------------------------------------------------

    async def submit(self, alerts: Sequence[Alert]) -> None:
        """Hand alerts (firing or resolved) to grouping; unrouted ones are only logged
        (once per state: re-submitting an unchanged alert does not log it again)."""
        for a in self.grouper.submit(alerts, self.clock()):
            if self._logged.get(a.key) == (a.starts_at, a.firing):
                continue
            self._logged[a.key] = (a.starts_at, a.firing)
            if not a.firing:
                del self._logged[a.key]
            log.info("alert %s %s [%s] %s: no route, logged only", a.key,
                     "firing" if a.firing else "resolved", a.labels.get("severity", "?"), a.summary)

    async def send(self, message: Message) -> None:
        """Route a one-off message (no grouping); its key is sent once per channel."""
        now = self.clock()
        matches = route({**message.labels, "severity": message.severity}, self.config)
        if not matches:
            log.info("message %s [%s] %s: no route, logged only", message.key,
                     message.severity, message.subject)
            return
        jobs: list[_Job] = []
        for m in matches:
            hold = None
            if m.quiet_hours and message.severity != CRITICAL and m.quiet_hours.contains(now):
                hold = m.quiet_hours.release(now)
            jobs += [_Job(t, hold) for t in self._targets_of(m.receivers)]
        note = _Note(f"msg|{message.key}", "", message.severity, message.subject, message.body,
                     notify_type(message.severity))
        await self._dispatch(note, _unique(jobs), now)

    def _muted(self, alert: Alert, now: float) -> bool:
        return covering(self.downtimes, alert.labels.get("host", ""),
                        alert.labels.get("check", ""), now) is not None

    async def refresh_downtimes(self, now: float) -> None:
        """Re-read the downtimes (every master reads the same store). If the store is
        down, the last list is kept: downtimes end on time all the same."""
        if (self._downtimes_read is not None
                and now - self._downtimes_read < self.downtime_refresh):
            return
        try:
            self.downtimes = await asyncio.to_thread(Downtimes(self.store).current, now)
        except (PoolwardenError, SQLAlchemyError) as exc:
            log.error("notify: cannot read the downtimes (%s); using the last ones",
                      type(exc).__name__)
        self._downtimes_read = now

    async def tick(self) -> None:
        """Send what is due now (call about once a second); deliveries run in background."""
        async with self._tick:
            now = self.clock()
            await self.refresh_downtimes(now)
            for out in self.grouper.due(now):
                subject, body = render(out, now)
                note = _Note(out.key, out.stream, out.severity, subject, body,
                             notify_type(out.severity, out.kind))
                await self._dispatch(note, [_Job(t) for t in self._targets_of(out.receivers)], now)
            for row_id, target, row in await asyncio.to_thread(self._take_over, now):
                self._spawn(row_id, target, row.subject, row.body, notify_type(row.severity))

    async def run(self, stop: asyncio.Event, every: float = 1.0) -> None:
        """``tick()`` every ``every`` seconds until ``stop`` is set, then drain."""
        while not stop.is_set():
            try:
                await self.tick()
            except (PoolwardenError, SQLAlchemyError) as exc:  # the store blinked: go on
                log.error("notify tick failed: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), every)
            except TimeoutError:
                continue
        await self.aclose()

    async def drain(self) -> None:
        """Wait until every delivery started so far is recorded."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def aclose(self) -> None:
        await self.drain()
        if self._apprise is not None:
            self._apprise.close()

    def sent(self, limit: int = 50) -> list[SentRecord]:
        """The latest deliveries (any status), newest first. Blocking: a store read."""
        with self.store.session() as s:
            rows = s.scalars(select(Notification).order_by(Notification.id.desc()).limit(limit))
            return [SentRecord(id=r.id, key=r.key, receiver=r.receiver, channel=r.channel,
                               severity=r.severity, subject=r.subject, status=r.status,
                               attempts=r.attempts, error=r.error,
                               ts=r.sent_at if r.sent_at is not None else r.created_at)
                    for r in rows]

    # -- stages ---------------------------------------------------------------------------

    def _targets_of(self, receivers: Sequence[str]) -> list[Target]:
        """The receivers' channels; a URL shared by two receivers is used once."""
        seen: set[str] = set()
        out = []
        for r in receivers:
            for t in self.targets.get(r, []):
                if t.url not in seen:
                    seen.add(t.url)
                    out.append(t)
        return out

    async def _dispatch(self, note: _Note, jobs: Sequence[_Job], now: float) -> None:
        for job in jobs:
            try:
                row_id = await asyncio.to_thread(self._claim, note, job, now)
            except (PoolwardenError, SQLAlchemyError) as exc:
                # fail open: without the ledger a duplicate is possible, a lost page is worse
                log.error("notify %s %s: store unavailable (%s); sending unrecorded",
                          job.target.receiver, job.target.channel, type(exc).__name__)
                self._spawn(None, job.target, note.subject, note.body, note.ntype)
                continue
            if row_id is not None:
                self._spawn(row_id, job.target, note.subject, note.body, note.ntype)
            elif job.hold_until is None:
                log.debug("notify %s %s: %s already handled", job.target.receiver,
                          job.target.channel, note.key)

    def _ledger_key(self, note: _Note, t: Target) -> str:
        """The row's key. A message's is its own key. A group notification's is its
        content *and the notification before it on the same channel*: the same content
        right after itself is a duplicate (a restart, a second master), but the same
        content after something else (firing, resolved, firing again) is news."""
        if not note.chain:
            return _fit(note.key)
        with self.store.session() as s:
            last = s.scalar(select(Notification.key).where(
                Notification.group_key == note.chain, Notification.receiver == t.receiver,
                Notification.channel == t.channel).order_by(Notification.id.desc()).limit(1))
        tag = _digest(note.key)
        if last is not None and last.startswith(tag + "."):
            return last
        return _fit(f"{tag}.{_digest(last or '')}|{note.key}")

    def _claim(self, note: _Note, job: _Job, now: float) -> int | None:
        """Write the row before sending; the id if this process must send it now."""
        t = job.target
        key = self._ledger_key(note, t)
        status = NOTIFY_SENDING if job.hold_until is None else NOTIFY_HELD
        lease = job.hold_until if job.hold_until is not None else now + self.claim_ttl
        values = {"severity": note.severity, "subject": note.subject[:500], "body": note.body,
                  "status": status, "not_before": lease}
        row_id: int | None
        try:
            with self.store.session() as s:
                row = Notification(key=key, group_key=_fit(note.chain), receiver=t.receiver,
                                   channel=t.channel, attempts=0, error="", created_at=now,
                                   **values)
                s.add(row)
                s.flush()
                row_id = row.id
        except IntegrityError:  # known key: take it over only if failed or abandoned
            with self.store.session() as s:
                row_id = s.scalar(
                    update(Notification)
                    .where(Notification.key == key, Notification.receiver == t.receiver,
                           Notification.channel == t.channel,
                           or_(Notification.status == NOTIFY_FAILED,
                               and_(Notification.status.in_([NOTIFY_SENDING, NOTIFY_HELD]),
                                    Notification.not_before <= now)))
                    .values(**values).returning(Notification.id))
        if row_id is not None and status == NOTIFY_HELD:
            log.info("notify %s %s: %s held until %s (quiet hours)", t.receiver, t.channel,
                     note.subject, datetime.fromtimestamp(lease, UTC).isoformat())
            return None
        return row_id

    def _take_over(self, now: float) -> list[tuple[int, Target, Notification]]:
        """Claim rows whose time came: held ones at the end of quiet hours, and those a
        sender abandoned mid-send (it crashed or was killed). One process wins each row."""
        out = []
        waiting = [NOTIFY_HELD, NOTIFY_SENDING]
        with self.store.session() as s:
            rows = s.scalars(select(Notification).where(Notification.status.in_(waiting),
                                                        Notification.not_before <= now)
                             .order_by(Notification.id).limit(100)).all()
            for row in rows:
                target = self._by_channel.get((row.receiver, row.channel))
                values = ({"status": NOTIFY_SENDING, "not_before": now + self.claim_ttl}
                          if target else {"status": NOTIFY_FAILED,
                                          "error": "channel no longer configured"})
                res = s.execute(update(Notification).where(
                    Notification.id == row.id, Notification.status == row.status,
                    Notification.not_before == row.not_before).values(**values))
                if target is not None and res.rowcount == 1:  # type: ignore[attr-defined]
                    out.append((row.id, target, row))
        return out

    def _spawn(self, row_id: int | None, target: Target, subject: str, body: str,
               ntype: str) -> None:
        task = asyncio.create_task(self._deliver(row_id, target, subject, body, ntype),
                                   name=f"notify:{row_id or 'unrecorded'}")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            urls = [t.url for t in self._by_channel.values()]
            log.error("notify %s: delivery crashed: %s", task.get_name(),
                      scrub(f"{type(exc).__name__}: {exc}", urls))

    async def _deliver(self, row_id: int | None, target: Target, subject: str, body: str,
                       ntype: str) -> None:
        result = await deliver(target, subject, body, ntype, send=self._send, policy=self.policy)
        if row_id is not None:
            await asyncio.to_thread(self._record, row_id, result)
        if result.ok:
            log.info("notified %s via %s: %s", target.receiver, target.channel, subject)
        else:
            log.error("notify %s via %s FAILED after %d attempts: %s", target.receiver,
                      target.channel, result.attempts, result.error)

    def _record(self, row_id: int, result: Delivery) -> None:
        with self.store.session() as s:
            s.execute(update(Notification).where(Notification.id == row_id).values(
                status=NOTIFY_SENT if result.ok else NOTIFY_FAILED,
                attempts=Notification.attempts + result.attempts, error=result.error[:4000],
                sent_at=self.clock() if result.ok else None, not_before=None))


def _unique(jobs: Sequence[_Job]) -> list[_Job]:
    """One job per URL: the first route that reached it decides (and its quiet hours)."""
    seen: dict[str, _Job] = {}
    for j in jobs:
        seen.setdefault(j.target.url, j)
    return list(seen.values())
