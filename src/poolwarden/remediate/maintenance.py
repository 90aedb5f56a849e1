"""Put a host into maintenance, or take it out: the lease, the resume, the plan, the
journal, the run.

This is the I/O shell around the pure planner. The order matters:
1. take the pool's lease (one remediation per pool at a time, across processes);
2. finish any remediation of this pool that a dead process left half done — re-running
   the same command after a crash *is* the way to resume it;
3. read the pool, plan (pure), journal the plan, execute it;
4. read the pool back, so the report shows what is, not what was meant to be.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from poolwarden.errors import NotFound, OperationRefused
from poolwarden.hypervisor.base import HostState, PoolDriver, PoolSnapshot
from poolwarden.remediate.executor import Executor, ExecutorSettings, ProgressSink
from poolwarden.remediate.model import ActionPlan
from poolwarden.remediate.planner import plan_maintenance
from poolwarden.remediate.restore import GOAL as EXIT_GOAL
from poolwarden.remediate.restore import moved_away, plan_exit_maintenance
from poolwarden.store.db import Store
from poolwarden.store.journal import RemediationJournal, RemediationRecord
from poolwarden.store.lease import StoreLease

OK_STATUSES = ("done", "dry_run")


class LimitReached(OperationRefused):
    """A safety limit, checked under the pool's lease, forbids acting now."""


@dataclass(frozen=True)
class MaintenanceOutcome:
    record: RemediationRecord
    #: an interrupted remediation of the pool that this call finished first, if any
    resumed: RemediationRecord | None
    layout_before: dict[str, list[str]]
    layout_after: dict[str, list[str]]
    master_before: str
    master_after: str

    @property
    def ok(self) -> bool:
        return self.record.status in OK_STATUSES

    def to_json(self) -> dict[str, Any]:
        r, plan = self.record, self.record.plan
        return {
            "remediation": r.id, "pool": r.pool, "host": r.host_name, "goal": r.goal,
            "status": r.status, "dry_run": r.dry_run, "feasible": plan.feasible,
            "error": r.error,
            "blockers": [b.to_json() for b in plan.blockers],
            "steps": [s.to_json() for s in r.steps] if not r.dry_run else [
                {"seq": i, "name": s.kind.value, "title": s.title, "status": "planned",
                 "detail": "", "started": None, "finished": None}
                for i, s in enumerate(plan.steps)
            ],
            "master_before": self.master_before, "master_after": self.master_after,
            "before": self.layout_before, "after": self.layout_after,
            "resumed": self.resumed.id if self.resumed else None,
        }


def who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def host_maintenance(
    driver: PoolDriver, store: Store, host: str, *, shutdown: bool = False,
    dry_run: bool = False, progress: ProgressSink | None = None,
    settings: ExecutorSettings | None = None, requested_by: str = "",
    lease_ttl: float = 60.0, on_planned: Callable[[RemediationRecord], None] | None = None,
    guard: Callable[[PoolSnapshot], str] | None = None,
) -> MaintenanceOutcome:
    """Plan and (unless ``dry_run``) carry out maintenance of ``host`` (name or ref).

    ``on_planned`` is told the journal record as soon as the plan is written, before any
    step runs (an API answers with its id and lets the execution go on). ``guard`` is
    asked, under the pool's lease, whether acting is still allowed (the safety limits: a
    check before the lease could race another master); a non-empty answer refuses
    with :class:`LimitReached` and changes nothing."""

    def plan(target: HostState, _journal: RemediationJournal) -> ActionPlan:
        snap = driver.snapshot(evacuating=target.ref)
        if guard is not None and not dry_run and (reason := guard(snap)):
            raise LimitReached(reason)
        return plan_maintenance(snap, target.ref, shutdown=shutdown)

    return _carry_out(driver, store, host, "maintenance", plan, dry_run=dry_run,
                      progress=progress, settings=settings, requested_by=requested_by,
                      lease_ttl=lease_ttl, on_planned=on_planned)


def host_exit_maintenance(
    driver: PoolDriver, store: Store, host: str, *, restore: bool = False,
    dry_run: bool = False, progress: ProgressSink | None = None,
    settings: ExecutorSettings | None = None, requested_by: str = "",
    lease_ttl: float = 60.0, on_planned: Callable[[RemediationRecord], None] | None = None,
) -> MaintenanceOutcome:
    """Enable ``host`` again (name or ref); with ``restore``, migrate back the VMs its
    last maintenance moved away (see :mod:`~poolwarden.remediate.restore`)."""

    def plan(target: HostState, journal: RemediationJournal) -> ActionPlan:
        snap = driver.snapshot()
        back = moved_away(journal.recent(snap.name, limit=100), target.ref) if restore else []
        return plan_exit_maintenance(snap, target.ref, restore=back)

    return _carry_out(driver, store, host, EXIT_GOAL, plan, dry_run=dry_run,
                      progress=progress, settings=settings, requested_by=requested_by,
                      lease_ttl=lease_ttl, on_planned=on_planned)


def _carry_out(
    driver: PoolDriver, store: Store, host: str, goal: str,
    make_plan: Callable[[HostState, RemediationJournal], ActionPlan], *, dry_run: bool,
    progress: ProgressSink | None, settings: ExecutorSettings | None, requested_by: str,
    lease_ttl: float, on_planned: Callable[[RemediationRecord], None] | None,
) -> MaintenanceOutcome:
    """The order of the module docstring, for any goal: lease, resume, plan, journal, run."""
    journal = RemediationJournal(store)
    first = driver.snapshot()
    target = first.host(host)
    if target is None:
        known = ", ".join(h.name for h in first.hosts)
        raise NotFound(f"no host {host!r} in pool {first.name} (hosts: {known})")
    lease = StoreLease(store, f"pool:{first.name}", ttl=lease_ttl)
    lease.acquire()
    try:
        executor = Executor(driver, journal, heartbeat=lease.renew, progress=progress,
                            settings=settings)
        resumed: RemediationRecord | None = None
        interrupted = None if dry_run else journal.open_for_pool(first.name)
        if interrupted is not None:
            resumed = executor.run(interrupted.id)
            if interrupted.host == target.ref and interrupted.goal == goal:
                # The same command, run again after a crash: finishing it is the answer.
                after = driver.snapshot()
                return MaintenanceOutcome(
                    resumed, resumed, resumed.plan.layout_before, after.layout(),
                    resumed.plan.master_before, _name(after.master, after.hosts),
                )
        plan = make_plan(target, journal)
        rid = journal.create(plan, dry_run=dry_run, requested_by=requested_by or who())
        if dry_run or not plan.feasible:
            if plan.feasible:
                journal.finish(rid, "dry_run")
            if on_planned is not None:
                on_planned(journal.get(rid))
            # Nothing changed: "after" is the plan's intent (dry run) or the pool as it is.
            return MaintenanceOutcome(journal.get(rid), resumed, plan.layout_before,
                                      plan.layout_after, plan.master_before, plan.master_after)
        if on_planned is not None:
            on_planned(journal.get(rid))
        record = executor.run(rid)
        after = driver.snapshot()
        return MaintenanceOutcome(record, resumed, plan.layout_before, after.layout(),
                                  plan.master_before, _name(after.master, after.hosts))
    finally:
        lease.release()


def _name(ref: str, hosts: Any) -> str:
    return next((h.name for h in hosts if h.ref == ref), ref)
