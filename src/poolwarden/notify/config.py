"""The ``notify:`` section: receivers (apprise URLs) and the routing tree.

Validated at load like the rest of ``poolwarden.yaml`` (extra keys are errors), with the
cross-field rules checked here so that a typo in a receiver name fails at start-up, not
at 3 a.m. when the first critical alert needs it. Error messages never quote a URL in
clear: URLs carry passwords and tokens (see :func:`poolwarden.notify.channels.redact`).
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from poolwarden.config.types import Duration

#: severities in rising order; ``critical`` is the one quiet hours never hold
SEVERITIES = ("info", "warning", "critical")
CRITICAL = "critical"


def _as_list(value: Any) -> Any:
    """``escalate_to: directors`` and ``escalate_to: [directors]`` mean the same."""
    return [value] if isinstance(value, str) else value


NameList = Annotated[list[str], BeforeValidator(_as_list)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


_QUIET = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})(?:\s+(\S+))?\s*$")


class QuietHours(_Model):
    """A daily window (``22:00-07:00``, optionally ``22:00-07:00 Europe/Paris``).

    Without a time zone the window is in the machine's local time. A window whose end is
    before its start runs over midnight. Pure: every method takes the time it judges.
    """

    start: time
    end: time
    tz: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: Any) -> Any:
        if not isinstance(data, str):
            return data
        m = _QUIET.match(data)
        if not m:
            raise ValueError(f"quiet hours must look like 22:00-07:00 [Zone/Name], not {data!r}")
        h1, m1, h2, m2, tz = m.groups()
        try:
            start, end = time(int(h1), int(m1)), time(int(h2), int(m2))
        except ValueError as exc:
            raise ValueError(f"quiet hours {data!r}: {exc}") from exc
        return {"start": start, "end": end, "tz": tz}

    @model_validator(mode="after")
    def _check(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("quiet hours start and end must differ")
        if self.tz is not None:
            try:
                ZoneInfo(self.tz)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown time zone {self.tz!r}") from exc
        return self

    def _local(self, ts: float) -> datetime:
        zone = ZoneInfo(self.tz) if self.tz else None
        return datetime.fromtimestamp(ts, zone) if zone else datetime.fromtimestamp(ts)

    def contains(self, ts: float) -> bool:
        t = self._local(ts).time()
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def release(self, ts: float) -> float:
        """``ts`` itself outside the window, else the window's end (when held items go)."""
        if not self.contains(ts):
            return ts
        local = self._local(ts)
        end = local.replace(hour=self.end.hour, minute=self.end.minute, second=0,
                            microsecond=0)
        if end <= local:
            end += timedelta(days=1)
        # wall-clock arithmetic: a DST change inside the window moves the end with it
        return max(end.timestamp(), ts)

    def __str__(self) -> str:
        zone = f" {self.tz}" if self.tz else ""
        return f"{self.start:%H:%M}-{self.end:%H:%M}{zone}"


MatchValue = str | list[str]


class Route(_Model):
    """One branch of the routing tree; unset timings inherit the ``notify:`` defaults."""

    #: label → value (or any of a list of values); empty matches every alert
    match: dict[str, MatchValue] = {}
    receivers: NameList = Field(min_length=1)
    continue_: bool = Field(default=False, alias="continue")
    #: optional stable name: idempotency keys use it, so renaming it re-sends once
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]+$")
    repeat: Duration | None = None
    group_by: list[str] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    escalate_after: Duration | None = None
    escalate_to: NameList | None = None
    quiet_hours: QuietHours | None = None

    @model_validator(mode="after")
    def _values(self) -> Route:
        for label, value in self.match.items():
            if not label:
                raise ValueError("match: a label name must not be empty")
            if isinstance(value, list) and not value:
                raise ValueError(f"match: {label}: give at least one value")
        return self

    def describe(self) -> str:
        """Human label for errors and logs: the name, else the matchers."""
        if self.name:
            return self.name
        parts = [f"{k}={'|'.join(v) if isinstance(v, list) else v}" for k, v in self.match.items()]
        return ",".join(parts) or "*"


class NotifyConfig(_Model):
    """Receivers, routes, and the Alertmanager timings every route inherits."""

    #: receiver name → apprise URLs (every URL is one channel: mail, Slack, SMS...)
    receivers: dict[str, list[str]] = {}
    routes: list[Route] = []
    #: receivers for alerts no route matched; empty: such alerts are only logged
    default_receivers: NameList = []
    group_by: list[str] = ["host"]
    group_wait: Duration = 30.0
    group_interval: Duration = 300.0
    repeat_interval: Duration = 4 * 3600.0
    escalate_after: Duration | None = None
    escalate_to: NameList = []
    #: per channel: attempts, first back-off (doubling), the limit of one attempt, and
    #: the least time between two sends (a channel is used by one send at a time)
    send_attempts: int = Field(default=4, ge=1, le=10)
    send_backoff: Duration = 1.0
    send_timeout: Duration = 30.0
    send_interval: Duration = 1.0

    @model_validator(mode="after")
    def _cross_check(self) -> NotifyConfig:
        known = ", ".join(sorted(self.receivers)) or "none defined"
        for name, urls in self.receivers.items():
            if not urls:
                raise ValueError(f"receiver {name!r} has no URL")
            for i, url in enumerate(urls):
                if "://" not in url:
                    raise ValueError(f"receiver {name!r}: URL #{i + 1} is not an apprise "
                                     "URL (scheme://...)")

        def check(names: list[str], where: str) -> None:
            for n in names:
                if n not in self.receivers:
                    raise ValueError(f"{where}: unknown receiver {n!r} (known: {known})")

        if (self.escalate_after is None) != (not self.escalate_to):
            raise ValueError("escalate_after and escalate_to go together")
        check(self.default_receivers, "default_receivers")
        check(self.escalate_to, "escalate_to")
        for i, r in enumerate(self.routes):
            where = f"route {i + 1} ({r.describe()})"
            check(r.receivers, where)
            check(r.escalate_to or [], f"{where}: escalate_to")
            to = r.escalate_to if r.escalate_to is not None else self.escalate_to
            if r.escalate_after is not None and not to:
                raise ValueError(f"{where}: escalate_after needs escalate_to")
            if r.escalate_to and (r.escalate_after or self.escalate_after) is None:
                raise ValueError(f"{where}: escalate_to needs escalate_after")
            interval = r.group_interval or self.group_interval
            if (r.repeat or self.repeat_interval) < interval:
                raise ValueError(f"{where}: repeat must not be shorter than group_interval "
                                 f"({interval:g}s): lower group_interval on the route")
        names = [r.name for r in self.routes if r.name]
        if len(names) != len(set(names)):
            raise ValueError("route names must be unique")
        return self
