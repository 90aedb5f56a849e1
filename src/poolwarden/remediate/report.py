"""What a remediation tells people: the report (timeline, layouts, what is left to do),
the labels a one-off message is routed on, and the hint of what fixes the hardware."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from poolwarden.evaluate.rules import Decision, Detected, when
from poolwarden.messages import Message
from poolwarden.remediate.maintenance import MaintenanceOutcome
from poolwarden.remediate.model import StepKind

#: per problem kind: what fixes the hardware (the report's "what a person still has to do")
FIX_HINTS = {
    "temperature": "check the cooling: fans, airflow, heatsink paste, room temperature",
    "fan": "replace the failed fan",
    "power_supply": "replace or reseat the failed power supply and check its power feed",
    "redundancy": "restore the lost redundancy (a power supply or fan has failed)",
}


def fix_hint(d: Detected) -> str:
    return FIX_HINTS.get(d.kind, f"fix the hardware fault behind {d.check}")


def message_labels(d: Detected, decision: Decision, **extra: str) -> dict[str, str]:
    """The labels the notifier routes a one-off message on."""
    return {"severity": decision.severity, "host": d.host, "pool": d.pool, "check": d.check,
            "kind": d.kind, "rule": decision.rule, "action": str(decision.action), **extra}


def _todo(o: MaintenanceOutcome, d: Detected) -> list[str]:
    """What a person still has to do after the run."""
    r, host = o.record, o.record.host_name
    if r.dry_run:
        return [f"dry run: nothing was changed; {host} still has the problem: {fix_hint(d)}"]
    if not r.plan.feasible:
        return [f"{host} was NOT evacuated and still has the problem: {fix_hint(d)}",
                *[f"clear the blocker: {b.message}" for b in r.plan.blockers]]
    if r.status != "done":
        return [f"the remediation ended {r.status}: {r.error}",
                f"check {host} and the pool against the layout below; {fix_hint(d)}"]
    off = any(s.kind == "shutdown_host" and s.status == "done" for s in r.steps)
    todo = [f"{host} is disabled and empty{' and powered off' if off else ''}: {fix_hint(d)}",
            f"then {'power it on and ' if off else ''}bring it back: Exit Maintenance Mode "
            f"in XenCenter, or `xe host-enable host={host}` on the pool master"]
    if o.master_after != o.master_before:
        todo.append(f"the pool master is now {o.master_after}: tools pointed at "
                    f"{o.master_before} must follow")
    return todo


def remediation_report(outcome: MaintenanceOutcome, detected: Detected) -> dict[str, Any]:
    """The JSON form of a remediation report (what the demo prints)."""
    doc = outcome.to_json()
    for s in doc["steps"]:
        s["duration"] = (s["finished"] - s["started"]
                         if s["started"] is not None and s["finished"] is not None else None)
    doc.update(detected=detected.to_json(), todo=_todo(outcome, detected))
    return doc


def headline(o: MaintenanceOutcome) -> str:
    r = o.record
    off = any(s.kind is StepKind.SHUTDOWN_HOST for s in r.plan.steps)
    what = "maintenance with shutdown" if off else "maintenance"
    if r.dry_run:
        return f"DRY RUN: would put {r.host_name} into {what} ({len(r.plan.steps)} steps)"
    if not r.plan.feasible:
        return f"{r.host_name} cannot be evacuated: {len(r.plan.blockers)} blocker(s)"
    if r.status == "done":
        return f"{r.host_name} put into {what}"
    return f"{what} of {r.host_name} ended {r.status}: {r.error}"


def _layout(layout: dict[str, list[str]]) -> list[str]:
    return [f"  {h}: {', '.join(vms) or '(empty)'}" for h, vms in sorted(layout.items())]


def report_message(o: MaintenanceOutcome, d: Detected, decision: Decision, *,
                   clock: Callable[[], float] = time.time) -> Message:
    """The report of one remediation to people (idempotency key ``remediation:<id>``)."""
    r, report = o.record, remediation_report(o, d)
    ok = r.status in ("done", "dry_run")
    lines = [headline(o) + f" (remediation #{r.id}, pool {r.pool})", "",
             f"Detected: {d.summary()}", f"Rule: {decision.rule} → {decision.action}", ""]
    if r.plan.feasible:
        lines.append("Would be done:" if r.dry_run else "Done, step by step:")
        for i, s in enumerate(report["steps"], 1):
            took = f", {s['duration']:.1f} s" if s["duration"] is not None else ""
            at = f" at {when(s['started'])}" if s["started"] else ""
            detail = f" — {s['detail']}" if s["detail"] else ""
            lines.append(f"  {i}. {s['title']}: {s['status']}{at}{took}{detail}")
    else:
        lines += ["Blockers (nothing was changed):",
                  *[f"  - {b.code}: {b.message}" for b in r.plan.blockers]]
    lines += ["", f"Pool master: {o.master_before} → {o.master_after}",
              "VMs per host before:", *_layout(o.layout_before),
              f"VMs per host after{' (planned)' if r.dry_run else ''}:", *_layout(o.layout_after),
              "", "What a person still has to do:", *[f"  - {t}" for t in report["todo"]]]
    severity = decision.severity if ok else "critical"
    return Message(key=f"remediation:{r.id}", severity=severity,
                   subject=f"[poolwarden] {headline(o)}", body="\n".join(lines),
                   labels=message_labels(d, decision, severity=severity, remediation=str(r.id),
                                  status=r.status),
                   ts=clock())


__all__ = ["FIX_HINTS", "fix_hint", "headline", "message_labels", "remediation_report",
           "report_message"]
