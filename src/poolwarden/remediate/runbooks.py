"""The built-in action items (runbooks) behind one interface, and what they tell people.

A :class:`Runbook` turns a rule's :class:`~poolwarden.evaluate.rules.Decision` about a
:class:`Detected` problem into a :class:`RunResult`: the messages for people and, for a
remediation, the JSON report. Runbooks block (XenAPI, the store): the engine runs them in a
worker thread and sends the messages; they record their progress on the incident's
timeline through ``RunContext.event``.

- ``notify``: a message with the rule's severity; nothing else.
- ``evacuate``: host maintenance through :func:`host_maintenance` (the pool lease, the
  journal, resume, plan, execution) after the safety limits; ``shutdown``: the same, then
  power the host off. Past a limit, or with an infeasible plan, a person is asked instead.
- ``script``: a vetted script on the problem's host (:mod:`.script_action`, looked up by
  :func:`runbook_for`: it builds on this module, so it is not imported here).
- ``none``: nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from poolwarden.evaluate.rules import Action, Decision, Detected
from poolwarden.hypervisor.base import PoolDriver, PoolSnapshot
from poolwarden.messages import Message
from poolwarden.remediate.executor import ExecutorSettings
from poolwarden.remediate.maintenance import (
    LimitReached,
    MaintenanceOutcome,
    host_maintenance,
)
from poolwarden.remediate.model import ActionPlan, Step
from poolwarden.remediate.planner import plan_maintenance
from poolwarden.remediate.report import (
    FIX_HINTS,
    fix_hint,
    headline,
    message_labels,
    remediation_report,
    report_message,
)
from poolwarden.store.db import Store
from poolwarden.store.journal import RemediationJournal, RemediationRecord
from poolwarden.store.lease import LeaseHeld

if TYPE_CHECKING:
    from poolwarden.remediate.engine import RemediationConfig
    from poolwarden.remediate.script_action import ScriptRunner

HOUR = 3600.0
#: journal statuses of a remediation that changed nothing (not an "action" for the limits)
NO_ACTION = ("infeasible", "dry_run")


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a runbook did. ``retry``: nothing happened yet, keep it queued (lease held)."""

    status: str  # done | dry_run | failed | escalated | skipped | waiting | noop
    summary: str
    messages: tuple[Message, ...] = ()
    report: dict[str, Any] | None = None
    retry: bool = False
    remediation: int | None = None


@dataclass(frozen=True)
class RunContext:
    """What a runbook may use. ``event(kind, message, data)`` writes a timeline entry on
    the incident that triggered the run (callable from the worker thread); ``scripts``
    runs vetted scripts (None: no ``scripts:`` configured)."""

    store: Store
    config: RemediationConfig
    driver_for: Callable[[str], PoolDriver]
    event: Callable[[str, str, dict[str, Any]], None]
    clock: Callable[[], float] = time.time
    settings: ExecutorSettings | None = None
    scripts: ScriptRunner | None = None


class Runbook(Protocol):
    """One action item. Blocking: the engine calls it in a worker thread."""

    action: Action

    def run(self, detected: Detected, decision: Decision, ctx: RunContext) -> RunResult: ...


def escalation(d: Detected, decision: Decision, reason: str, *, would: Sequence[str] = (),
               key: str, clock: Callable[[], float] = time.time) -> Message:
    """A critical message to a person: poolwarden did not act, and what it would have done."""
    verb = (f"run script {decision.script.name} on" if decision.action is Action.SCRIPT
            and decision.script is not None else str(decision.action))
    body = [f"poolwarden did NOT {verb} {d.host}: {reason}", "",
            f"Detected: {d.summary()}", f"Rule: {decision.rule} → {decision.action}"]
    if would:
        body += ["", "What would have been done:", *[f"  {i}. {w}" for i, w in
                                                    enumerate(would, 1)]]
    body += ["", f"A person must decide what to do with {d.host}; {fix_hint(d)}."]
    return Message(key=key, severity="critical",
                   subject=f"[poolwarden] {d.host}: {decision.action} NOT done — {reason}",
                   body="\n".join(body),
                   labels=message_labels(d, decision, severity="critical"), ts=clock())


class Notify:
    """Tell people, with the rule's severity; no change to any pool.

    The telling itself is the problem's *alert* (the service labels it with this rule's
    severity, and the notifier's routes, grouping, repeats, resolved message and
    escalation apply): a second, separate message here would be a duplicate email.
    """

    action = Action.NOTIFY

    def run(self, detected: Detected, decision: Decision, ctx: RunContext) -> RunResult:
        return RunResult("done", f"people are notified through the {decision.severity} "
                                 f"alert routes; no automatic action ({fix_hint(detected)})")


class NoAction:
    action = Action.NONE

    def run(self, detected: Detected, decision: Decision, ctx: RunContext) -> RunResult:
        return RunResult("noop", f"rule {decision.rule} says: leave it alone")


def hosts_down_by_us(records: Sequence[RemediationRecord], snap: PoolSnapshot,
                     ) -> dict[str, RemediationRecord]:
    """host ref → our remediation that left it disabled (newest record per host decides)."""
    out: dict[str, RemediationRecord] = {}
    seen: set[str] = set()
    for r in records:  # newest first
        if r.host in seen:
            continue
        seen.add(r.host)
        host = snap.host(r.host)
        if (r.goal == "maintenance" and not r.dry_run and r.status not in NO_ACTION
                and host is not None and not host.enabled):
            out[r.host] = r
    return out


def limit_breach(records: Sequence[RemediationRecord], snap: PoolSnapshot, host: str, *,
                 max_hosts_down: int, max_actions_per_hour: int, now: float) -> str:
    """Which safety limit acting on ``host`` (a ref) would break; "" if none (pure)."""
    down = {ref: r for ref, r in hosts_down_by_us(records, snap).items() if ref != host}
    if len(down) >= max_hosts_down:
        which = ", ".join(f"{r.host_name} (#{r.id})" for r in down.values())
        return (f"max_hosts_down_per_pool={max_hosts_down} reached: already in maintenance "
                f"by poolwarden: {which}" if which else
                "max_hosts_down_per_pool=0: poolwarden may put no host in maintenance")
    acted = [r for r in records if not r.dry_run and r.status not in NO_ACTION
             and r.created_at >= now - HOUR]
    if len(acted) >= max_actions_per_hour:
        ids = ", ".join(f"#{r.id} {r.host_name}" for r in acted)
        return (f"max_actions_per_pool_per_hour={max_actions_per_hour} reached: "
                f"{len(acted)} remediations in the last hour ({ids})")
    return ""


def plan_summary(plan: ActionPlan) -> str:
    if not plan.feasible:
        return "infeasible: " + "; ".join(f"{b.code}: {b.message}" for b in plan.blockers)
    return f"{len(plan.steps)} steps: " + "; ".join(s.title for s in plan.steps)


class _Timeline:
    """ProgressSink that writes the plan and each finished step on the incident, live."""

    def __init__(self, ctx: RunContext, journal: RemediationJournal, pool: str,
                 host: str) -> None:
        self.ctx, self.journal, self.pool, self.host = ctx, journal, pool, host
        self.announced: set[int] = set()
        self.rid: int | None = None  # the record being executed, if it is about our host
        self.started: dict[int, float] = {}

    def planned(self, rec: RemediationRecord) -> None:
        if rec.id not in self.announced:
            self.announced.add(rec.id)
            self.ctx.event("remediation_planned", plan_summary(rec.plan),
                           {"remediation": rec.id, "dry_run": rec.dry_run,
                            "plan": rec.plan.to_json()})

    def step_started(self, seq: int, step: Step) -> None:
        if seq == 0 or self.rid is None:  # a new record: ours, or one resumed first
            rec = self.journal.open_for_pool(self.pool)
            self.rid = rec.id if rec is not None and rec.host_name == self.host else None
            if rec is not None and self.rid is not None:
                self.planned(rec)
        self.started[seq] = self.ctx.clock()

    def step_progress(self, seq: int, step: Step, fraction: float) -> None:
        pass

    def step_finished(self, seq: int, step: Step, status: str, detail: str) -> None:
        if self.rid is not None:
            self.step(self.rid, seq, step, status, self.started.get(seq), self.ctx.clock(),
                      detail)

    def step(self, rid: int, seq: int, step: Step, status: str, started: float | None,
             finished: float | None, detail: str = "") -> None:
        self.ctx.event("remediation_step", f"{step.title}: {status}"
                       + (f" ({detail})" if detail else ""),
                       {"remediation": rid, "seq": seq, "name": step.kind.value,
                        "title": step.title, "status": status, "started": started,
                        "finished": finished, "detail": detail})


class Evacuate:
    """Host maintenance: master hand-over, migrations, disabled host (DESIGN §3)."""

    action = Action.EVACUATE
    power_off = False

    def run(self, detected: Detected, decision: Decision, ctx: RunContext) -> RunResult:
        shutdown = self.power_off or decision.shutdown
        driver = ctx.driver_for(detected.pool)
        try:
            return self._run(driver, detected, decision, ctx, shutdown)
        finally:
            driver.close()

    def _run(self, driver: PoolDriver, d: Detected, decision: Decision, ctx: RunContext,
             shutdown: bool) -> RunResult:
        cfg, journal = ctx.config, RemediationJournal(ctx.store)
        snap = driver.snapshot()
        host = snap.host(d.host)
        if host is None:
            reason = f"no host {d.host} in pool {snap.name}"
            return RunResult("failed", reason, (escalation(
                d, decision, reason, key=f"escalation:{d.key}:{d.since:.3f}:unknown-host",
                clock=ctx.clock),))
        stop = self._precheck(driver, snap, host.ref, d, decision, ctx, shutdown)
        if stop is not None:
            return stop
        sink = _Timeline(ctx, journal, snap.name, host.name)

        def guard(now_snap: PoolSnapshot) -> str:
            return limit_breach(journal.recent(snap.name, limit=500), now_snap, host.ref,
                                max_hosts_down=cfg.max_hosts_down_per_pool,
                                max_actions_per_hour=cfg.max_actions_per_pool_per_hour,
                                now=ctx.clock())

        try:
            outcome = host_maintenance(
                driver, ctx.store, host.ref, shutdown=shutdown, dry_run=cfg.dry_run,
                progress=sink, settings=ctx.settings, lease_ttl=cfg.lease_ttl,
                requested_by=f"poolwarden:rule {decision.rule}", guard=guard)
        except LeaseHeld as exc:
            return RunResult("waiting", f"pool {snap.name} is busy: {exc}", retry=True)
        except LimitReached as exc:  # another master acted between the check and the lease
            msg = escalation(d, decision, str(exc), clock=ctx.clock,
                             key=f"escalation:{d.key}:{d.since:.3f}:limit")
            return RunResult("escalated", str(exc), (msg,))
        rec = outcome.record
        sink.planned(rec)
        if rec.dry_run:
            for i, step in enumerate(rec.plan.steps):
                sink.step(rec.id, i, step, "planned", None, None)
        report = remediation_report(outcome, d)
        status = {"done": "done", "dry_run": "dry_run", "infeasible": "escalated"}.get(
            rec.status, "failed")
        msg = report_message(outcome, d, decision, clock=ctx.clock)
        return RunResult(status, headline(outcome), (msg,), report, remediation=rec.id)


    @staticmethod
    def _precheck(driver: PoolDriver, snap: PoolSnapshot, host: str, d: Detected,
                  decision: Decision, ctx: RunContext, shutdown: bool) -> RunResult | None:
        """Already done, or past a safety limit: the result; None to go ahead."""
        journal, cfg = RemediationJournal(ctx.store), ctx.config
        interrupted = journal.open_for_pool(snap.name)  # the journal's pool: XAPI's name
        if interrupted is not None and interrupted.host == host:
            return None  # why: finishing what a dead process began is no new action
        records = journal.recent(snap.name, limit=500)
        ours = hosts_down_by_us(records, snap).get(host)
        if ours is not None and ours.status == "done":
            # why: a restart or a second node sees the same problem again; nothing to redo.
            # Its report goes out again under the same key: the notifier's ledger drops it
            # if it was sent, and sends it if the process that did the work died first.
            master = snap.host(snap.master)
            done = MaintenanceOutcome(ours, None, ours.plan.layout_before, snap.layout(),
                                      ours.plan.master_before,
                                      master.name if master else snap.master)
            return RunResult("skipped", f"{d.host} is already in maintenance "
                             f"(remediation #{ours.id})",
                             (report_message(done, d, decision, clock=ctx.clock),),
                             remediation=ours.id)
        breach = limit_breach(records, snap, host,
                              max_hosts_down=cfg.max_hosts_down_per_pool,
                              max_actions_per_hour=cfg.max_actions_per_pool_per_hour,
                              now=ctx.clock())
        if not breach:
            return None
        preview = plan_maintenance(driver.snapshot(evacuating=host), host, shutdown=shutdown)
        would = [s.title for s in preview.steps] or [plan_summary(preview)]
        msg = escalation(d, decision, breach, would=would, clock=ctx.clock,
                         key=f"escalation:{d.key}:{d.since:.3f}:limit")
        return RunResult("escalated", breach, (msg,))


class Shutdown(Evacuate):
    """Evacuate, then power the host off."""

    action = Action.SHUTDOWN
    power_off = True


#: the action items defined here; :func:`runbook_for` adds ``script``
RUNBOOKS: dict[Action, Runbook] = {
    Action.NOTIFY: Notify(), Action.EVACUATE: Evacuate(), Action.SHUTDOWN: Shutdown(),
    Action.NONE: NoAction(),
}


def runbook_for(action: Action) -> Runbook:
    """The runbook of ``action``. The script one is imported here, not at the top: it
    builds on this module (RunResult, escalation), which must load first."""
    if action is Action.SCRIPT:
        from poolwarden.remediate.script_action import SCRIPT

        return SCRIPT
    return RUNBOOKS[action]


__all__ = ["FIX_HINTS", "HOUR", "RUNBOOKS", "Evacuate", "NoAction", "Notify", "RunContext",
           "RunResult", "Runbook", "Shutdown", "escalation", "hosts_down_by_us",
           "limit_breach", "message_labels", "plan_summary", "remediation_report",
           "report_message", "runbook_for"]
