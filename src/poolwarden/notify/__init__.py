"""Notifications: route → group → de-duplicate → deliver (Alertmanager's pipeline).

- ``config``: the ``notify:`` section (receivers as apprise URLs, routes, timings).
- ``router``: which routes labels take; pure.
- ``grouping``: when to notify (group_wait, group_interval, repeat, escalation, quiet
  hours); a pure state machine driven by the caller's clock.
- ``channels``: delivery to one apprise URL with retries; ``redact``/``scrub`` secrets.
- ``render``: what a notification says.
- ``notifier``: the stages together, with the store as idempotency ledger.
- ``sinks``: local SMTP and webhook receivers for the demo and the tests.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from poolwarden.notify.channels import DeliveryError, RetryPolicy, Sender, redact, scrub
    from poolwarden.notify.config import NotifyConfig, QuietHours, Route
    from poolwarden.notify.grouping import Grouper, Kind, Outgoing
    from poolwarden.notify.notifier import Notifier, SentRecord
    from poolwarden.notify.render import render
    from poolwarden.notify.router import RouteMatch, route

#: name → module; imported on first use, so that loading the configuration (which needs
#: only ``notify.config``) does not pay for apprise and SQLAlchemy
_EXPORTS = {
    "DeliveryError": "channels", "RetryPolicy": "channels", "Sender": "channels",
    "redact": "channels", "scrub": "channels",
    "NotifyConfig": "config", "QuietHours": "config", "Route": "config",
    "Grouper": "grouping", "Kind": "grouping", "Outgoing": "grouping",
    "Notifier": "notifier", "SentRecord": "notifier", "render": "render",
    "RouteMatch": "router", "route": "router",
}
__all__ = [
    "DeliveryError", "Grouper", "Kind", "Notifier", "NotifyConfig", "Outgoing", "QuietHours",
    "RetryPolicy", "Route", "RouteMatch", "Sender", "SentRecord", "redact", "render", "route",
    "scrub",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
