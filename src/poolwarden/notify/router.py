"""Which routes an alert or a message takes: a pure function over labels.

Alertmanager semantics, flattened to one level (poolwarden's tree is a list under an
implicit root): routes are tried in order, the first that matches wins and the search
stops there unless that route says ``continue: true``. When nothing matched, the alert
goes to ``default_receivers``; when those are empty too, the result is empty and the
alert is only logged (how ``info`` stays out of inboxes by default).

A ``match`` entry is a label and a value (equality) or a list of values (any of them);
a label the alert does not carry matches nothing but the empty string.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from poolwarden.notify.config import MatchValue, NotifyConfig, QuietHours, Route


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """A route taken, with every setting resolved (route value, else the default)."""

    route_id: str
    receivers: tuple[str, ...]
    group_by: tuple[str, ...]
    group_wait: float
    group_interval: float
    repeat_interval: float
    escalate_after: float | None = None
    escalate_to: tuple[str, ...] = ()
    quiet_hours: QuietHours | None = None

    @property
    def escalates(self) -> bool:
        return self.escalate_after is not None and bool(self.escalate_to)


def matches(match: Mapping[str, MatchValue], labels: Mapping[str, str]) -> bool:
    """Every matcher holds: equality, or membership for a list of values."""
    for label, want in match.items():
        have = labels.get(label, "")
        if (have not in want) if isinstance(want, list) else (have != want):
            return False
    return True


def route_id(r: Route) -> str:
    """Stable across restarts and reordering: the name, else a digest of what it does."""
    if r.name:
        return r.name
    spec = json.dumps([r.match, r.receivers], sort_keys=True)
    return "r" + hashlib.sha256(spec.encode()).hexdigest()[:10]


def resolve(r: Route, config: NotifyConfig) -> RouteMatch:
    """The route's settings with the ``notify:`` defaults filled in."""
    to = r.escalate_to if r.escalate_to is not None else config.escalate_to
    after = r.escalate_after if r.escalate_after is not None else config.escalate_after
    return RouteMatch(
        route_id=route_id(r),
        receivers=tuple(r.receivers),
        group_by=tuple(r.group_by if r.group_by is not None else config.group_by),
        group_wait=r.group_wait or config.group_wait,
        group_interval=r.group_interval or config.group_interval,
        repeat_interval=r.repeat or config.repeat_interval,
        escalate_after=after if to else None,
        escalate_to=tuple(to) if after is not None else (),
        quiet_hours=r.quiet_hours,
    )


def default_match(config: NotifyConfig) -> RouteMatch | None:
    """The implicit root route, or None when unmatched alerts are only logged."""
    if not config.default_receivers:
        return None
    return RouteMatch(
        route_id="default", receivers=tuple(config.default_receivers),
        group_by=tuple(config.group_by), group_wait=config.group_wait,
        group_interval=config.group_interval, repeat_interval=config.repeat_interval,
    )


def route(labels: Mapping[str, str], config: NotifyConfig | Sequence[Route]) -> list[RouteMatch]:
    """The routes ``labels`` take, in order; empty means "log only".

    ``config`` may be a bare list of routes (defaults then come from ``NotifyConfig()``).
    """
    if not isinstance(config, NotifyConfig):
        config = NotifyConfig.model_construct(routes=list(config))
    out: list[RouteMatch] = []
    for r in config.routes:
        if matches(r.match, labels):
            out.append(resolve(r, config))
            if not r.continue_:
                break
    if not out and (default := default_match(config)) is not None:
        out.append(default)
    return out
