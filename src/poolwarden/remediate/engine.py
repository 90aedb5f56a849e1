"""The remediation engine: state changes in, rules decided, action items run safely.

The service calls :meth:`RemediationEngine.handle` with every batch of state changes and
:meth:`RemediationEngine.tick` every few seconds. The engine keeps, in memory, the HARD
problems it has seen (so ``sustained`` and a BMC coming back are re-checked on each tick)
and what each rule already did for each problem (a rule fires once per problem and
state). Durable truth — what was done to which host, and when — is the store's
remediation journal, which the safety limits read, so they hold across restarts.

Safety, the answers to MONITORING.md's complaints about event-driven remediation:

- **rate limits**: ``max_actions_per_pool_per_hour`` and ``max_hosts_down_per_pool``
  are counted from the journal; past one, nothing is done and a person gets an escalation
  saying which limit and what would have been done (no remediation loops);
- **one remediation per pool**: destructive actions (and rule scripts) wait in a per-pool
  FIFO queue; maintenance takes the pool's store lease (inside ``host_maintenance``); a
  held lease keeps the job queued and retried after ``retry_after``, never dropped;
- **safe across restarts and nodes**: a host that the journal says we already put in
  maintenance (and that is still disabled) is not remediated again; the journal resumes
  an interrupted remediation; the lease keeps a second node off the pool;
- **no action on UNKNOWN** or while the host's BMC does not answer (see ``rules.match``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from poolwarden.config.types import Duration

if TYPE_CHECKING:
    from poolwarden.config.models import PoolConfig
    from poolwarden.remediate.script_action import ScriptRunner
from poolwarden.errors import PoolwardenError
from poolwarden.evaluate.rules import (
    Action,
    Decision,
    Detected,
    MatchContext,
    RuleConfig,
    match,
)
from poolwarden.evaluate.state import AGENT_CHECK
from poolwarden.hypervisor.base import PoolDriver
from poolwarden.incidents.manager import IncidentManager
from poolwarden.messages import Message, State, StateChange, StateType
from poolwarden.remediate.executor import ExecutorSettings
from poolwarden.remediate.runbooks import RunContext, RunResult, escalation, runbook_for
from poolwarden.store.db import Store

log = logging.getLogger("poolwarden.remediate")
HISTORY = 50
#: RunResult.status → the incident timeline entry that ends the remediation
_FINAL_EVENT = {"done": "remediation_done", "dry_run": "remediation_done",
                "skipped": "remediation_done", "failed": "remediation_failed",
                "escalated": "remediation_escalated", "refused": "remediation_refused",
                "cancelled": "remediation_cancelled"}


def _queued(action: Action) -> bool:
    """Goes through the per-pool queue: what changes a pool, and scripts (they may change
    a host; one action per pool at a time). ``destructive`` keeps its own meaning for the
    rules: scripts are matched as their own kind and may fire on UNKNOWN (a BMC reset)."""
    return action.destructive or action is Action.SCRIPT


class RemediationConfig(BaseModel):
    """``remediation:`` in poolwarden.yaml: the safety limits of automatic action."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    dry_run: bool = False  # plan, journal, report; change nothing in any pool
    max_hosts_down_per_pool: int = Field(default=1, ge=0)
    max_actions_per_pool_per_hour: int = Field(default=3, ge=0)
    lease_ttl: Duration = 60.0  # the pool lease, renewed at every step
    retry_after: Duration = 30.0  # a queued action whose pool is busy is retried after


@dataclass(slots=True)
class _Problem:
    """A HARD problem as the engine follows it (until its recovery)."""

    change: StateChange  # the latest HARD change
    since: float  # HARD in its current state since
    pool: str
    #: (rule index, state) already fired, or refused and recorded
    fired: set[tuple[int, str]] = field(default_factory=set)
    refused: set[tuple[int, str]] = field(default_factory=set)
    pending: bool = False  # a decision waits for ``sustained``: tick() looks again


@dataclass(slots=True)
class _Job:
    detected: Detected
    decision: Decision
    problem: _Problem  # the job is wanted while this very problem is open
    fired: tuple[int, str]
    incident_id: int | None = None
    retry_at: float = 0.0
    waiting_noted: bool = False


class RemediationEngine:
    """Maps problems to action items and runs them (see the module docstring)."""

    def __init__(self, config: RemediationConfig, rules: Sequence[RuleConfig], store: Store,
                 *, driver_for: Callable[[str], PoolDriver],
                 incidents: IncidentManager | None,
                 send: Callable[[Message], Awaitable[None]],
                 clock: Callable[[], float] = time.time,
                 pools: Mapping[str, str] | None = None,
                 settings: ExecutorSettings | None = None,
                 on_finished: Callable[[str], None] | None = None,
                 scripts: ScriptRunner | None = None) -> None:
        """``pools``: host name → pool name (:func:`host_pools`); a change's ``pool`` label
        is used for hosts not in it. ``incidents`` must be the manager that handles the
        same state changes (its in-memory index finds a problem's open incident).
        ``scripts`` runs the ``script`` action (None: scripts are not configured)."""
        self.config, self.rules, self.store = config, list(rules), store
        self.driver_for, self.incidents, self.send, self.clock = driver_for, incidents, send, clock
        self.pools = dict(pools or {})
        self.settings = settings
        self.scripts = scripts
        #: told the pool's name when an action on it ended (the pool cache re-reads it)
        self.on_finished = on_finished
        #: the most recent outcomes, newest last (the demo and the API show them)
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self._problems: dict[tuple[str, str], _Problem] = {}
        self._agent_down: set[str] = set()
        self._queues: dict[str, deque[_Job]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}

    # --- state changes in --------------------------------------------------------------

    async def handle(self, changes: Sequence[StateChange]) -> None:
        """Take a batch of state changes (in order) and act on what the rules decide."""
        touched: set[tuple[str, str]] = set()
        for c in changes:
            if c.check == AGENT_CHECK:  # any non-OK, SOFT too: the BMC did not answer
                if c.new_state is State.OK:
                    self._agent_down.discard(c.host)
                else:
                    self._agent_down.add(c.host)
                touched.update(k for k in self._problems if k[0] == c.host)
            key = (c.host, c.check)
            if c.new_state is State.OK:
                self._problems.pop(key, None)
                touched.discard(key)
            elif c.state_type is StateType.HARD:
                p = self._problems.get(key)
                if p is None:
                    p = self._problems[key] = _Problem(c, c.ts, self._pool_of(c))
                elif p.change.new_state is not c.new_state:
                    p.since = c.ts
                p.change = c
                touched.add(key)
        for key in sorted(touched):
            p = self._problems.get(key)  # a concurrent batch may have ended it meanwhile
            if p is not None:
                await self._consider(p)

    async def tick(self) -> None:
        """Re-check the problems waiting for ``sustained``; retry the queued actions."""
        for p in [p for p in self._problems.values() if p.pending]:
            await self._consider(p)
        for pool in list(self._queues):
            self._kick(pool)

    def _pool_of(self, c: StateChange) -> str:
        return self.pools.get(c.host) or c.labels.get("pool", "")

    async def _consider(self, p: _Problem) -> None:
        """Match the problem and do what is due and not yet done. No await between the
        check and the record of a firing, so a concurrent tick cannot fire it twice."""
        now, c = self.clock(), p.change
        ctx = MatchContext(pool=p.pool, since=p.since,
                           agent_reachable=c.host not in self._agent_down)
        decisions = match(self.rules, c, ctx)
        p.pending = any(not d.ready(now) and not d.refused for d in decisions)
        for d in decisions:
            fired = (d.index, c.new_state.name)
            if fired in p.fired or (d.refused and fired in p.refused):
                continue
            if d.action is Action.NONE:
                p.fired.add(fired)
                log.info("%s %s: rule %s says leave it alone", c.host, c.check, d.rule)
                continue
            detected = Detected.of(c, p.pool, p.since)
            job = _Job(detected, d, p, fired)
            if d.refused or (_queued(d.action) and not p.pool):
                p.refused.add(fired)
                reason = d.refused or f"{c.host} belongs to no configured pool"
                await self._finish(job, RunResult("refused", reason))
                continue
            if not d.ready(now):
                continue  # sustained: tick() looks again
            p.fired.add(fired)
            if _queued(d.action):
                await self._enqueue(job)
            else:
                await self._event(job, "remediation_detected",
                                  f"rule {d.rule} → {d.action}: {detected.summary()}")
                await self._finish(job, await self._run(job))

    # --- the per-pool queue ------------------------------------------------------------

    async def _enqueue(self, job: _Job) -> None:
        pool = job.detected.pool
        ahead = len(self._queues.get(pool, ()))
        wait = f" (queued behind {ahead} in pool {pool})" if ahead else ""
        await self._event(job, "remediation_detected",
                          f"rule {job.decision.rule} → {job.decision.action}: "
                          f"{job.detected.summary()}{wait}",
                          {"rule": job.decision.rule, "action": str(job.decision.action),
                           "queued_behind": ahead, "detected": job.detected.to_json()})
        self._queues.setdefault(pool, deque()).append(job)  # after the entry: it comes first
        self._kick(pool)

    def _kick(self, pool: str) -> None:
        q = self._queues.get(pool)
        if pool in self._workers or not q or q[0].retry_at > self.clock():
            return
        self._workers[pool] = asyncio.get_running_loop().create_task(self._work(pool))

    async def _work(self, pool: str) -> None:
        """Run the pool's jobs one at a time, oldest first, until empty or waiting."""
        q = self._queues[pool]
        try:
            while q:
                job = q[0]
                if job.retry_at > self.clock():
                    return
                result = self._still_wanted(job) or await self._run(job)
                if result.retry:
                    job.retry_at = self.clock() + self.config.retry_after
                    if not job.waiting_noted:  # said once, not at every retry
                        job.waiting_noted = True
                        log.info("%s %s %s (rule %s): waiting — %s", job.detected.host,
                                 job.detected.check, job.decision.action, job.decision.rule,
                                 result.summary)
                        await self._event(job, "remediation_waiting",
                                          f"{result.summary}; retried every "
                                          f"{self.config.retry_after:g} s")
                        await self._send(result.messages)
                    return
                q.popleft()
                await self._finish(job, result)
        finally:
            del self._workers[pool]
            if not q:
                self._queues.pop(pool, None)

    def _still_wanted(self, job: _Job) -> RunResult | None:
        """None if the job may run now; else why not (checked when its turn comes)."""
        d, p = job.detected, job.problem
        if self._problems.get((d.host, d.check)) is not p:
            return RunResult("cancelled", f"{d.check} on {d.host} is no longer "
                             f"{d.state}: nothing to do")
        if d.host in self._agent_down and job.decision.action.destructive:
            p.fired.discard(job.fired)  # why: fire again once the agent answers
            return RunResult("refused", f"{d.host}'s BMC agent stopped answering while the "
                             "action waited: the problem cannot be confirmed")
        return None

    async def _run(self, job: _Job) -> RunResult:
        d, decision = job.detected, job.decision
        ctx = RunContext(self.store, self.config, self.driver_for,
                         lambda kind, msg, data: self._event_now(job, kind, msg, data),
                         self.clock, self.settings, self.scripts)
        try:
            return await asyncio.to_thread(runbook_for(decision.action).run, d, decision, ctx)
        except PoolwardenError as exc:
            if exc.retryable:  # XAPI unreachable, busy: the job keeps its place; a person
                reason = f"{exc}; poolwarden keeps retrying"  # knows it is stuck
                msg = escalation(d, decision, reason, clock=self.clock,
                                 key=f"escalation:{d.key}:{d.since:.3f}:retrying")
                return RunResult("waiting", f"{decision.action} of {d.host}: {exc}", (msg,),
                                 retry=True)
            reason = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a bug: tell a person once rather than retry in a loop
            log.exception("remediation of %s failed unexpectedly", d.host)
            reason = f"internal error {type(exc).__name__}: {exc}"
        msg = escalation(d, decision, reason, clock=self.clock,
                         key=f"escalation:{d.key}:{d.since:.3f}:error")
        return RunResult("failed", reason, (msg,))

    async def _finish(self, job: _Job, result: RunResult) -> None:
        """The terminal timeline entry, the messages, the history."""
        d, decision = job.detected, job.decision
        kind = _FINAL_EVENT.get(result.status, "remediation_done")
        level = logging.INFO if kind == "remediation_done" else logging.WARNING
        log.log(level, "%s %s %s (rule %s): %s — %s", d.host, d.check, decision.action,
                decision.rule, result.status, result.summary)
        await self._event(job, kind, result.summary,
                          {"status": result.status, "remediation": result.remediation,
                           "messages": [m.key for m in result.messages]})
        await self._send(result.messages)
        self.history.append({
            "ts": self.clock(), "host": d.host, "pool": d.pool, "check": d.check,
            "rule": decision.rule, "action": str(decision.action), "status": result.status,
            "summary": result.summary, "remediation": result.remediation,
            "incident": job.incident_id, "messages": [m.key for m in result.messages],
            "report": result.report})
        if self.on_finished is not None and _queued(decision.action):
            self.on_finished(d.pool)

    async def _send(self, messages: Sequence[Message]) -> None:
        for msg in messages:
            try:
                await self.send(msg)
            except Exception:  # a notifier failure must not stop the remediation loop
                log.exception("could not send message %s", msg.key)

    # --- the incident timeline ---------------------------------------------------------

    def _event_now(self, job: _Job, kind: str, message: str,
                   data: dict[str, Any] | None = None) -> None:
        """Write one timeline entry on the job's incident (blocking; any thread)."""
        if self.incidents is None:
            return
        d = job.detected
        if job.incident_id is None:  # found once, kept: the incident may resolve meanwhile
            job.incident_id = self.incidents.open_id(d.host, d.check)
        if job.incident_id is None:
            log.debug("no open incident for %s %s: %s not recorded", d.host, d.check, kind)
            return
        try:
            self.incidents.record_event(job.incident_id, kind, message, data=data)
        except PoolwardenError as exc:  # archived meanwhile: the log keeps the story
            log.warning("incident #%s: %s not recorded: %s", job.incident_id, kind, exc)

    async def _event(self, job: _Job, kind: str, message: str,
                     data: dict[str, Any] | None = None) -> None:
        await asyncio.to_thread(self._event_now, job, kind, message, data)

    # --- for the service, the demo and tests -------------------------------------------

    def forget(self, hosts: set[str]) -> None:
        """Stop following the problems of ``hosts`` (their partition moved to another
        master); queued jobs for them are dropped, a running one finishes under its
        pool lease."""
        for key in [k for k in self._problems if k[0] in hosts]:
            del self._problems[key]
        for pool, q in self._queues.items():
            running = q[0] if q and pool in self._workers else None
            for job in [j for j in q if j.detected.host in hosts and j is not running]:
                q.remove(job)

    def queued(self) -> dict[str, list[str]]:
        """pool → the jobs waiting or running, oldest first (``host check action``)."""
        return {pool: [f"{j.detected.host} {j.detected.check} {j.decision.action}" for j in q]
                for pool, q in self._queues.items() if q}

    @property
    def busy(self) -> bool:
        return bool(self._workers) or any(self._queues.values())

    async def drain(self, timeout: float = 60.0, poll: float = 0.02) -> None:
        """Tick until nothing is queued or running; TimeoutError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            await self.tick()
            if not self.busy:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"remediations still queued: {self.queued()}")
            await asyncio.sleep(poll)

    async def close(self) -> None:
        """Wait for the running remediations (a thread cannot be interrupted safely; the
        journal would resume it anyway). Queued jobs stay queued in memory only: after a
        restart the state engine reports the problems again."""
        await asyncio.gather(*self._workers.values(), return_exceptions=True)


def host_pools(pools: Sequence[PoolConfig]) -> dict[str, str]:
    """host name → pool name, from the configuration (the engine's ``pools``)."""
    return {h.name: p.name for p in pools for h in p.hosts}


__all__ = ["RemediationConfig", "RemediationEngine", "host_pools"]
