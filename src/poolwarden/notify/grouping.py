"""When to notify: Alertmanager's grouping, as a pure state machine over time.

``submit(alerts, now)`` files alerts into groups (one per route and ``group_by`` values);
``due(now)`` returns the notifications whose time has come. No clock, no sleeping, no
I/O: tests drive it with a fake clock, the notifier with ``time.time()`` once a second.

Per group, two streams of notifications, each never closer than ``group_interval``:

- regular (to the route's receivers): the first ``group_wait`` after the group appeared
  (so 20 alerts of one host make ONE notification); then an update ``group_interval``
  after the last one when anything changed (an alert joined, re-fired or resolved); a
  repeat exactly ``repeat_interval`` after the last notification while at least one
  alert is firing and unacknowledged (acknowledged alerts stop repeats); a resolved
  notification when every alert of the group resolved, which ends the group.
- escalation (to ``escalate_to``): an alert already notified that stays firing and
  unacknowledged ``escalate_after`` past its ``starts_at`` is escalated once per firing
  episode; alerts reaching that age together are escalated together.

Quiet hours hold a notification (of either stream) until the window ends, unless the
worst alert in it is ``critical``: critical always goes. What is released at the end of
the window is the group's state at that moment, not a backlog.

Alerts in a scheduled downtime (``muted``, see ``store.downtimes``) are held back: the
group notifies, repeats and escalates as if they were not there. When the downtime ends,
an alert still firing is notified as one that just joined — or, if people were told
about it before the downtime and nothing else changed, at the group's next repeat — and
its escalation waits ``escalate_after`` from then. Its resolution is told only if its
firing was.

Alerts resolved before anyone was told about them vanish silently. A group that ended
leaves a tombstone for ``group_interval`` so that an alert flapping right back cannot
notify sooner than that (a storm Alertmanager users know).

Content keys are derived from data (route, group labels, which alerts in which episode),
never from this process's clock, so a restarted notifier or a second master computes the
same keys; two consecutive notifications of a stream never share one, which is what the
store's ledger relies on to drop duplicates (see ``notifier``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from poolwarden.messages import Alert
from poolwarden.notify.config import CRITICAL, SEVERITIES, NotifyConfig
from poolwarden.notify.router import RouteMatch, route

GroupLabels = tuple[tuple[str, str], ...]
#: whether an alert is held back at a time (a scheduled downtime covers it)
Muted = Callable[[Alert, float], bool]
GroupKey = tuple[str, GroupLabels]
INF = math.inf


class Kind(StrEnum):
    FIRING = "firing"  # first notification or an update of the group
    REPEAT = "repeat"
    RESOLVED = "resolved"  # every alert of the group resolved
    ESCALATION = "escalation"


def severity_rank(severity: str) -> int:
    """Unknown severities rank with ``warning``: better noisy than silent."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else 1


def worst(alerts: Iterable[Alert]) -> str:
    sev = [a.labels.get("severity", "warning") for a in alerts]
    return max(sev, key=severity_rank) if sev else "info"


def fingerprint(alerts: Iterable[Alert]) -> str:
    """Which alerts, in which episode, firing or not; acknowledgements do not count."""
    items = sorted(f"{a.key}\x1f{a.starts_at!r}\x1f{int(a.firing)}" for a in alerts)
    return hashlib.sha256("\x1e".join(items).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One notification to send now: what, to whom, and its content key."""

    key: str
    kind: Kind
    route_id: str
    group: GroupLabels
    receivers: tuple[str, ...]
    firing: tuple[Alert, ...]
    resolved: tuple[Alert, ...]
    severity: str
    ts: float
    #: alerts of the group firing but held back by a downtime (not listed)
    muted: int = 0

    @property
    def group_label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.group) or "all"

    @property
    def stream(self) -> str:
        """The sequence this notification belongs to: the group's, or its escalations'.
        Two consecutive notifications of a stream never have the same ``key``."""
        labels = ",".join(f"{k}={v}" for k, v in self.group)
        tail = "|escalation" if self.kind is Kind.ESCALATION else ""
        return f"{self.route_id}|{labels}{tail}"


@dataclass
class _Group:
    match: RouteMatch
    labels: GroupLabels
    first_at: float  # not before: group_wait, or a tombstone's group_interval
    alerts: dict[str, Alert] = field(default_factory=dict)
    notified: set[str] = field(default_factory=set)  # keys announced as firing
    last_sent: float | None = None
    last_fp: str = ""
    last_escalation: float | None = None
    #: alert key → the last time a downtime held it back: its escalation counts from there
    held: dict[str, float] = field(default_factory=dict)

    def firing(self, muted: Muted, now: float) -> list[Alert]:
        """The firing alerts people are told about (not those in a downtime)."""
        return sorted((a for a in self.alerts.values() if a.firing and not muted(a, now)),
                      key=_order)

    def shown(self, muted: Muted, now: float) -> list[Alert]:
        """What a notification now would carry: unmuted firing, and resolved."""
        return [a for a in self.alerts.values() if not (a.firing and muted(a, now))]

    def resolved(self) -> list[Alert]:
        return sorted((a for a in self.alerts.values() if not a.firing), key=_order)

    def label_text(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.labels)


def _never(_alert: Alert, _now: float) -> bool:
    return False


def _order(a: Alert) -> tuple[int, float, str]:
    return (-severity_rank(a.labels.get("severity", "")), a.starts_at, a.key)


class Grouper:
    """The grouping state of one notifier; see the module docstring for the rules."""

    def __init__(self, config: NotifyConfig, muted: Muted | None = None) -> None:
        self.config = config
        #: the notifier points this at its view of the downtimes
        self.muted: Muted = muted or _never
        self._groups: dict[GroupKey, _Group] = {}
        #: ended groups: when their last notification went, and their group_interval
        self._tombstones: dict[GroupKey, tuple[float, float]] = {}
        #: alert key → the groups it is firing in
        self._where: dict[str, set[GroupKey]] = {}
        #: (route, alert key, starts_at) escalated: once per firing episode, even if the
        #: alert's labels flap it out of its group and back; forgotten when it resolves
        self._escalated: set[tuple[str, str, float]] = set()

    def __len__(self) -> int:
        return len(self._groups)

    def submit(self, alerts: Iterable[Alert], now: float) -> list[Alert]:
        """File alerts into their groups; returns those no route took (log only).

        An alert whose labels changed so that it left a group (warning → critical moves
        it to another route) counts as resolved in the group it left, as in Alertmanager.
        """
        unrouted: list[Alert] = []
        for alert in alerts:
            matches = route(alert.labels, self.config) if alert.firing else []
            was = self._where.pop(alert.key, set())
            if not matches and not was:
                unrouted.append(alert)
            now_in = {self._fire(alert, m, now) for m in matches}
            for gk in was - now_in:
                self._resolve(gk, alert, now)
            if now_in:
                self._where[alert.key] = now_in
            elif was:
                self._escalated = {e for e in self._escalated if e[1] != alert.key}
        return unrouted

    def forget(self, keys: Iterable[str]) -> None:
        """Drop alerts without resolving them: another master owns them now (it
        rebuilds them from the incidents, and the ledger knows what was sent)."""
        for key in keys:
            for gk in self._where.pop(key, set()):
                g = self._groups.get(gk)
                if g is not None:
                    g.alerts.pop(key, None)
                    g.notified.discard(key)
                    g.held.pop(key, None)
                    if not g.alerts:
                        del self._groups[gk]
            self._escalated = {e for e in self._escalated if e[1] != key}

    def _fire(self, alert: Alert, m: RouteMatch, now: float) -> GroupKey:
        labels = tuple((name, alert.labels.get(name, "")) for name in m.group_by)
        gk = (m.route_id, labels)
        g = self._groups.get(gk)
        if g is None:
            first = now + m.group_wait
            if (tomb := self._tombstones.get(gk)) is not None:
                first = max(first, tomb[0] + tomb[1])
            g = self._groups[gk] = _Group(m, labels, first)
        g.alerts[alert.key] = alert
        return gk

    def _resolve(self, gk: GroupKey, alert: Alert, now: float) -> None:
        g = self._groups.get(gk)
        if g is None or alert.key not in g.alerts:
            return
        if alert.key in g.notified:  # reported at the next update
            g.alerts[alert.key] = alert if not alert.firing else replace(
                g.alerts[alert.key], firing=False, ts=now)
        else:
            del g.alerts[alert.key]  # nobody was told it fired: nothing to tell
            if not g.alerts:
                del self._groups[gk]

    # -- time ----------------------------------------------------------------------------

    def next_due(self, now: float) -> float | None:
        """The earliest time ``due`` will return something (None: nothing scheduled)."""
        times = [t for g in self._groups.values()
                 for t in (self._regular_at(g, now), self._escalation_at(g, now)[0])]
        soonest = min(times, default=INF)
        return None if soonest == INF else soonest

    def due(self, now: float) -> list[Outgoing]:
        """Notifications due at ``now``; the state advances as if they were sent."""
        out: list[Outgoing] = []
        for gk, g in list(self._groups.items()):
            g.held.update((a.key, now) for a in g.alerts.values()
                          if a.firing and self.muted(a, now))
            if self._regular_at(g, now) <= now:
                out.append(self._flush(gk, g, now))
            if gk in self._groups:
                esc = self._escalate(g, now)
                if esc is not None:
                    out.append(esc)
        for gk, (ended, interval) in list(self._tombstones.items()):
            if now - ended >= interval:
                del self._tombstones[gk]
        return out

    def _hold(self, g: _Group, at: float, alerts: Sequence[Alert]) -> float:
        """Quiet hours move ``at`` to the window's end unless the worst alert is critical."""
        quiet = g.match.quiet_hours
        if quiet is None or worst(alerts) == CRITICAL:
            return at
        return quiet.release(at)

    def _regular_at(self, g: _Group, now: float) -> float:
        alerts = g.shown(self.muted, now)
        if not alerts:
            return INF  # everything in a downtime: nothing to say until it ends
        if g.last_sent is None:
            base = g.first_at
        elif fingerprint(alerts) != g.last_fp:
            base = g.last_sent + g.match.group_interval
        elif any(not a.acknowledged for a in g.firing(self.muted, now)):
            base = g.last_sent + g.match.repeat_interval
        else:
            return INF  # all acknowledged, nothing new: silence until something changes
        return self._hold(g, max(base, now), alerts)

    def _flush(self, gk: GroupKey, g: _Group, now: float) -> Outgoing:
        firing, resolved = g.firing(self.muted, now), g.resolved()
        fp = fingerprint(firing + resolved)
        if not firing:
            kind = Kind.RESOLVED
        elif fp != g.last_fp or g.last_sent is None:
            kind = Kind.FIRING
        else:
            kind = Kind.REPEAT
        key = f"{g.match.route_id}|{g.label_text()}|{fp}"
        if kind is Kind.REPEAT:
            # the n-th repeat period since the content last changed, from data alone
            anchor = max(a.starts_at for a in firing)
            key += f"|repeat{math.floor((now - anchor) / g.match.repeat_interval)}"
        out = Outgoing(key=key, kind=kind, route_id=g.match.route_id, group=g.labels,
                       receivers=g.match.receivers, firing=tuple(firing),
                       resolved=tuple(resolved), severity=worst(firing or resolved), ts=now,
                       muted=sum(1 for a in g.alerts.values() if a.firing) - len(firing))
        g.last_sent = now
        g.notified.update(a.key for a in firing)
        for a in resolved:
            del g.alerts[a.key]
            g.notified.discard(a.key)
            g.held.pop(a.key, None)
        g.last_fp = fingerprint(g.shown(self.muted, now))
        if not g.alerts:
            del self._groups[gk]
            self._tombstones[gk] = (now, g.match.group_interval)
        return out

    def _escalation_at(self, g: _Group, now: float) -> tuple[float, list[Alert]]:
        """When the escalation stream is next due, and the alerts it would carry."""
        after = g.match.escalate_after
        if after is None or not g.match.escalate_to:
            return INF, []
        waiting = [a for a in g.firing(self.muted, now) if not a.acknowledged
                   and a.key in g.notified
                   and (g.match.route_id, a.key, a.starts_at) not in self._escalated]
        if not waiting:
            return INF, []

        def since(a: Alert) -> float:  # a downtime's end restarts the count
            return max(a.starts_at, g.held.get(a.key, a.starts_at))

        base = min(since(a) for a in waiting) + after
        if g.last_escalation is not None:
            base = max(base, g.last_escalation + g.match.group_interval)
        at = max(base, now)
        ripe = [a for a in waiting if since(a) + after <= at]
        return self._hold(g, at, ripe), ripe

    def _escalate(self, g: _Group, now: float) -> Outgoing | None:
        at, ripe = self._escalation_at(g, now)
        if at > now:
            return None
        self._escalated.update((g.match.route_id, a.key, a.starts_at) for a in ripe)
        g.last_escalation = now
        return Outgoing(key=f"{g.match.route_id}|{g.label_text()}|escalation|{fingerprint(ripe)}",
                        kind=Kind.ESCALATION, route_id=g.match.route_id, group=g.labels,
                        receivers=g.match.escalate_to, firing=tuple(ripe), resolved=(),
                        severity=worst(ripe), ts=now)
