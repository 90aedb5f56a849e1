"""What a notification says: subject and plain-text body, readable in a mail client and
on a phone, and apprise's type (its colour and icon)."""

from __future__ import annotations

from datetime import UTC, datetime

import apprise

from poolwarden.messages import Alert
from poolwarden.notify.config import CRITICAL
from poolwarden.notify.grouping import Kind, Outgoing

_TYPES = {CRITICAL: apprise.NotifyType.FAILURE, "warning": apprise.NotifyType.WARNING}


def notify_type(severity: str, kind: Kind | None = None) -> str:
    """Apprise's colour/icon: resolved is good news whatever the severity was."""
    if kind is Kind.RESOLVED:
        return apprise.NotifyType.SUCCESS.value
    return _TYPES.get(severity, apprise.NotifyType.INFO).value


def _when(ts: float, now: float) -> str:
    age = max(0, int(now - ts))
    span = f"{age // 86400}d {age % 86400 // 3600}h" if age >= 86400 else (
        f"{age // 3600}h {age % 3600 // 60}m" if age >= 3600 else f"{age // 60}m {age % 60}s")
    return f"{datetime.fromtimestamp(ts, UTC):%Y-%m-%d %H:%M:%S} UTC ({span} ago)"


_LIMITS = (("warn", "warning"), ("crit", "critical"))


def _alert_lines(a: Alert, now: float) -> list[str]:
    lab = a.labels
    lines = [f"- {a.summary}  [{lab.get('severity', '?')}]",
             f"  where:    host {lab.get('host', '?')}, pool {lab.get('pool', '?')}"]
    if lab.get("check"):
        kind = f" ({lab['kind']})" if lab.get("kind") else ""
        lines.append(f"  check:    {lab['check']}{kind}")
    lines.append(f"  since:    {_when(a.starts_at, now)}")
    if not a.firing:
        lines.append(f"  resolved: {_when(a.ts, now)}")
    if "value" in lab:
        limits = ", ".join(f"{name} {lab[k]}" for k, name in _LIMITS if lab.get(k))
        reading = f"{lab['value']}{lab.get('unit', '')}"
        lines.append(f"  reading:  {reading}" + (f" (thresholds: {limits})" if limits else ""))
    if a.incident_id is not None:
        ack = " (acknowledged)" if a.acknowledged else ""
        lines.append(f"  incident: #{a.incident_id}{ack}")
    return lines


def render(out: Outgoing, now: float) -> tuple[str, str]:
    """Subject and body of a grouped notification."""
    alerts = out.firing or out.resolved
    what = (f"{alerts[0].labels.get('host', out.group_label)}: {alerts[0].summary}"
            if len(alerts) == 1 else f"{len(alerts)} alerts on {out.group_label}")
    tag = {Kind.FIRING: out.severity.upper(), Kind.REPEAT: f"{out.severity.upper()}, repeat",
           Kind.RESOLVED: "RESOLVED", Kind.ESCALATION: f"ESCALATION, {out.severity.upper()}"}
    more = f" (+{len(out.resolved)} resolved)" if out.firing and out.resolved else ""
    subject = f"[{tag[out.kind]}] {what}{more}"
    head = {Kind.FIRING: f"{len(out.firing)} alert(s) firing on {out.group_label}.",
            Kind.REPEAT: f"Still firing, not acknowledged, on {out.group_label}.",
            Kind.RESOLVED: f"All alerts on {out.group_label} are RESOLVED.",
            Kind.ESCALATION: f"Escalation: firing and unacknowledged on {out.group_label}; "
                             "the first receivers did not acknowledge in time."}[out.kind]
    body = [head, ""]
    if out.muted:
        body += [f"({out.muted} more alert(s) of this group firing in a scheduled downtime, "
                 "not listed.)", ""]
    for title, group in (("FIRING", out.firing), ("RESOLVED", out.resolved)):
        if group:
            body.append(f"{title}:")
            for a in group:
                body += _alert_lines(a, now)
            body.append("")
    body.append("Acknowledge with: poolwarden incident ack <id>")
    return subject, "\n".join(body)


__all__ = ["notify_type", "render"]
