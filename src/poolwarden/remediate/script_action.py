"""The ``script`` action item: a vetted script on the problem's host, because a rule says so.

A rule ``{action: script, script: {name, args}}`` runs ``name`` from the scripts directory
on the problem's host through the same configured, audited path as the API and the CLI
(:class:`poolwarden.scripts.service.ConfiguredScripts`, who = ``rule:<rule name>``).
Arguments may hold the placeholders of :data:`RULE_PLACEHOLDERS`; the values filled in
must still pass the script's declared patterns, like anything typed by a person.

Safety: the engine keeps scripts in the per-pool queue (never beside a maintenance of the
same pool); ``remediation.dry_run`` records what would run and runs nothing; at most
``remediation.max_actions_per_pool_per_hour`` rule scripts run per pool and hour (counted
from the audit trail, so across restarts); a script that did not run or failed is not
retried (scripts are not known to be idempotent): a person is told.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from poolwarden.errors import NotFound, PoolwardenError
from poolwarden.evaluate.rules import Action, Decision, Detected, ScriptSpec
from poolwarden.messages import Message
from poolwarden.remediate.runbooks import (
    HOUR,
    RunContext,
    RunResult,
    escalation,
    message_labels,
)
from poolwarden.scripts.audit import record
from poolwarden.store.db import now
from poolwarden.store.models import SCRIPT_REFUSED

if TYPE_CHECKING:
    from poolwarden.scripts.runner import ScriptResult

#: what a rule's script arguments may refer to
RULE_PLACEHOLDERS = ("host.name", "host.address", "pool.name", "check")
_PLACEHOLDER = re.compile(r"\{([a-z_.]+)\}")
#: characters of each output stream quoted in the message (its end: errors come last)
EXCERPT = 1500


class ScriptRunner(Protocol):
    """How a runbook runs scripts (:class:`~poolwarden.scripts.service.ConfiguredScripts`);
    blocking, called from the engine's worker thread."""

    def address(self, host: str) -> str: ...

    def check(self, script: str, args: Sequence[str]) -> tuple[str, ...]: ...

    def rule_runs(self, pool: str, since: float) -> int: ...

    def run_blocking(self, host: str, script: str, args: Sequence[str], who: str,
                     ) -> tuple[ScriptResult, int]: ...


def unknown_placeholders(args: Sequence[str]) -> list[str]:
    """Placeholders in ``args`` that are not in :data:`RULE_PLACEHOLDERS` (load-time check)."""
    return [name for a in args for name in _PLACEHOLDER.findall(a)
            if name not in RULE_PLACEHOLDERS]


def expand(args: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """The arguments with placeholders filled; each stays one argument, whatever it holds."""
    return [_PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), a) for a in args]


def _values(d: Detected, runner: ScriptRunner) -> dict[str, str]:
    try:
        address = runner.address(d.host)
    except NotFound:  # why: the run itself then refuses the unknown host, and audits it
        address = d.host
    return {"host.name": d.host, "host.address": address, "pool.name": d.pool,
            "check": d.check}


def _tail(text: str) -> str:
    return text if len(text) <= EXCERPT else f"[… last {EXCERPT} characters]\n" + text[-EXCERPT:]


def outcome_text(r: ScriptResult) -> str:
    """``exit status 0 in 1.2 s`` / ``FAILED: exit status 3`` / ``TIMED OUT``."""
    if r.timed_out:
        return f"TIMED OUT after {r.duration:.1f} s (killed on the host)"
    if r.ok:
        return f"exit status 0 in {r.duration:.1f} s"
    return f"FAILED: exit status {r.exit_status} after {r.duration:.1f} s"


def script_message(r: ScriptResult, audit_id: int, call: str, d: Detected,
                   decision: Decision, ts: float) -> Message:
    """What people are told after a rule's script ran (idempotency key ``script:<audit>``)."""
    severity = decision.severity if r.ok else "critical"
    lines = [f"Rule {decision.rule} ran `{call}` on {d.host}: {outcome_text(r)} "
             f"(audit #{audit_id})", "", f"Detected: {d.summary()}",
             f"Rule: {decision.rule} → {decision.action}"]
    for name, text, cut in (("stdout", r.stdout, r.stdout_truncated),
                            ("stderr", r.stderr, r.stderr_truncated)):
        if text:
            more = " (truncated at the size limit)" if cut else ""
            lines += ["", f"Output ({name}){more}:", _tail(text).rstrip("\n")]
    if not r.ok:
        lines += ["", f"A person must check {d.host}: the script is not retried."]
    return Message(key=f"script:{audit_id}", severity=severity,
                   subject=f"[poolwarden] {d.host}: script {r.script} {outcome_text(r)}",
                   body="\n".join(lines),
                   labels=message_labels(d, decision, severity=severity,
                                         script=r.script, audit=str(audit_id)), ts=ts)


class ScriptAction:
    """Run the rule's script on the problem's host (see the module docstring)."""

    action = Action.SCRIPT

    def run(self, detected: Detected, decision: Decision, ctx: RunContext) -> RunResult:
        spec, d = decision.script, detected
        if spec is None:  # the rule's own validation prevents it
            return RunResult("failed", f"rule {decision.rule} names no script")
        key = f"script:{decision.rule}:{d.key}:{d.since:.3f}"
        runner = ctx.scripts
        if runner is None:
            reason = "no scripts: section in the configuration: running scripts is switched off"
            return RunResult("escalated", reason, (escalation(
                d, decision, reason, would=[f"run `{' '.join([spec.name, *spec.args])}` "
                                            f"on {d.host}"],
                key=f"{key}:off", clock=ctx.clock),))
        args = expand(spec.args, _values(d, runner))
        call = shlex.join([spec.name, *args])
        if ctx.config.dry_run:
            return self._dry_run(runner, spec, args, call, d, decision, ctx, key)
        who = f"rule:{decision.rule}"
        limit = ctx.config.max_actions_per_pool_per_hour
        ran = runner.rule_runs(d.pool, ctx.clock() - HOUR)
        if ran >= limit:
            reason = (f"max_actions_per_pool_per_hour={limit} reached: {ran} script(s) run "
                      f"by rules on pool {d.pool} in the last hour")
            record(ctx.store, who=who, host=d.host, script=spec.name, args=args,
                   started_at=now(), status=SCRIPT_REFUSED, error=reason)
            return RunResult("escalated", reason, (escalation(
                d, decision, reason, would=[f"run `{call}` on {d.host}"],
                key=f"{key}:limit", clock=ctx.clock),))
        ctx.event("script_started", f"running `{call}` on {d.host} as {who}",
                  {"script": spec.name, "args": args, "host": d.host, "who": who})
        try:
            result, audit_id = runner.run_blocking(d.host, spec.name, args, who)
        except PoolwardenError as exc:  # refused or unreachable: audited by the runner
            reason = f"the script did not run: {type(exc).__name__}: {exc}"
            ctx.event("script_finished", f"`{call}` on {d.host}: {reason}",
                      {"script": spec.name, "status": "not run", "error": str(exc)})
            return RunResult("failed", reason, (escalation(
                d, decision, reason, would=[f"run `{call}` on {d.host}"],
                key=f"{key}:error", clock=ctx.clock),))
        summary = f"`{call}` on {d.host}: {outcome_text(result)} (audit #{audit_id})"
        ctx.event("script_finished", summary, _finished_data(result, audit_id))
        report = {**result.to_json(), "audit_id": audit_id, "command": call,
                  "detected": d.to_json()}
        return RunResult("done" if result.ok else "failed", summary,
                         (script_message(result, audit_id, call, d, decision, ctx.clock()),),
                         report)

    @staticmethod
    def _dry_run(runner: ScriptRunner, spec: ScriptSpec, args: list[str], call: str,
                 d: Detected, decision: Decision, ctx: RunContext, key: str) -> RunResult:
        """Validate and record what would run; run nothing."""
        try:
            runner.check(spec.name, args)
            refused = ""
        except PoolwardenError as exc:
            refused = str(exc)
        summary = f"DRY RUN: would run `{call}` on {d.host}" + (
            f", but it would be refused: {refused}" if refused else "")
        ctx.event("script_dry_run", summary,
                  {"script": spec.name, "args": args, "host": d.host, "refused": refused})
        body = [summary, "", f"Detected: {d.summary()}",
                f"Rule: {decision.rule} → {decision.action}", "",
                "remediation.dry_run is on: nothing was run."]
        msg = Message(key=f"{key}:dry_run", severity=decision.severity,
                      subject=f"[poolwarden] DRY RUN: would run {spec.name} on {d.host}",
                      body="\n".join(body), labels=message_labels(d, decision, dry_run="true"),
                      ts=ctx.clock())
        return RunResult("dry_run" if not refused else "failed", summary, (msg,))


def _finished_data(r: ScriptResult, audit_id: int) -> dict[str, Any]:
    return {"script": r.script, "audit_id": audit_id, "status": r.status,
            "exit_status": r.exit_status, "timed_out": r.timed_out, "duration": r.duration,
            "stdout": _tail(r.stdout), "stderr": _tail(r.stderr),
            "stdout_truncated": r.stdout_truncated, "stderr_truncated": r.stderr_truncated}


#: the one instance the engine uses (:func:`poolwarden.remediate.runbooks.runbook_for`)
SCRIPT = ScriptAction()

__all__ = ["EXCERPT", "RULE_PLACEHOLDERS", "SCRIPT", "ScriptAction", "ScriptRunner",
           "expand", "outcome_text", "script_message", "unknown_placeholders"]
