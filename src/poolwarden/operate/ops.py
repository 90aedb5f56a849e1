"""What people ask poolwarden for, whatever the channel: REST, dashboard, chat.

The API routes, the dashboard and the Slack endpoint are thin: they authenticate, check
the role, and call :class:`Operations`. So an acknowledgement, a maintenance or a script
is the same operation, with the same checks and the same audit trail, from every door.

Reads come from the live monitor (check states, readings), the pool cache (hosts, master,
VMs per host) and the store (incidents, samples, the remediation journal). Actions that
block (the store, XenAPI, SSH) run in worker threads; callers await them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from poolwarden.errors import NotFound, OperationRefused
from poolwarden.hypervisor.base import PoolDriver, PoolSnapshot
from poolwarden.hypervisor.cache import CachedPool, PoolCache
from poolwarden.hypervisor.factory import pool_driver_for
from poolwarden.incidents.manager import IncidentManager
from poolwarden.incidents.model import IncidentRecord, Status
from poolwarden.incidents.samples import SampleWriter
from poolwarden.messages import State
from poolwarden.remediate.engine import host_pools
from poolwarden.remediate.executor import ExecutorSettings
from poolwarden.remediate.maintenance import (
    MaintenanceOutcome,
    host_exit_maintenance,
    host_maintenance,
)
from poolwarden.store.db import Store, now
from poolwarden.store.downtimes import DowntimeRecord, Downtimes
from poolwarden.store.journal import RemediationJournal, RemediationRecord
from poolwarden.store.models import Notification

if TYPE_CHECKING:
    from poolwarden.config.models import Config, HostConfig
    from poolwarden.evaluate.state import CheckStatus
    from poolwarden.messages import CheckResult
    from poolwarden.scripts.catalog import ScriptCatalog
    from poolwarden.scripts.runner import ScriptResult
    from poolwarden.service import Monitor

log = logging.getLogger("poolwarden.operate")
#: how long ``maintenance`` waits for the plan to be journaled before answering
PLAN_WAIT = 60.0


def check_json(st: CheckStatus) -> dict[str, Any]:
    return {"host": st.host, "check": st.check, "state": st.state.name,
            "state_type": str(st.state_type), "attempt": st.attempt,
            "max_attempts": st.max_attempts, "flapping": st.flapping,
            "unreachable": st.unreachable, "last_check": st.last_check,
            "last_change": st.last_change}


def remediation_json(r: RemediationRecord) -> dict[str, Any]:
    return {"id": r.id, "pool": r.pool, "host": r.host_name, "host_ref": r.host,
            "goal": r.goal, "status": r.status, "dry_run": r.dry_run, "error": r.error,
            "requested_by": r.requested_by,
            "created_at": r.created_at, "finished_at": r.finished_at,
            "plan": r.plan.to_json(), "steps": [s.to_json() for s in r.steps]}


def pool_json(entry: CachedPool) -> dict[str, Any]:
    """A pool as people read it: hosts with the master marked, and the VMs on each."""
    snap: PoolSnapshot | None = entry.snapshot
    doc: dict[str, Any] = {"name": entry.name, "read_at": entry.read_at,
                           "error": entry.error or None, "error_at": entry.error_at}
    if snap is None:
        return {**doc, "master": None, "hosts": [], "halted_vms": []}
    layout = snap.layout()
    master = snap.host(snap.master)
    doc["master"] = master.name if master else None
    doc["ha_enabled"] = snap.ha_enabled
    doc["hosts"] = [{
        "name": h.name, "ref": h.ref, "address": h.address, "master": h.ref == snap.master,
        "enabled": h.enabled, "live": h.live, "memory_total": h.memory_total,
        "memory_free": h.memory_free, "vms": layout.get(h.name, []),
    } for h in sorted(snap.hosts, key=lambda h: h.name)]
    doc["halted_vms"] = sorted(v.name for v in snap.vms if not v.running)
    return doc


@dataclass(frozen=True, slots=True)
class HostInfo:
    """A configured host and the pool it belongs to."""

    name: str
    pool: str
    config: HostConfig


class Operations:
    """Reads and actions for people; see the module docstring."""

    def __init__(self, config: Config, store: Store, *, monitor: Monitor | None = None,
                 incidents: IncidentManager | None = None,
                 driver_for: Callable[[str], PoolDriver] | None = None,
                 pools: PoolCache | None = None,
                 settings: ExecutorSettings | None = None) -> None:
        self.config, self.store, self.monitor = config, store, monitor
        self.incidents = incidents or (monitor.incidents if monitor is not None
                                       else IncidentManager(store))
        self.driver_for = driver_for or (monitor.driver_for if monitor is not None
                                         else pool_driver_for(
            config.pools, ssh_default=config.scripts.ssh if config.scripts else None))
        self.pool_cache = pools or (monitor.pools if monitor is not None else PoolCache(
            [p.name for p in config.pools], self.driver_for))
        self.settings = settings
        self._hosts = {h.name: HostInfo(h.name, p.name, h)
                       for p in config.pools for h in p.hosts}
        self._pool_of = host_pools(config.pools)
        self._samples = SampleWriter(store)
        self._catalog: ScriptCatalog | None = None
        self._catalog_lock = threading.Lock()

    # -- reads ----------------------------------------------------------------------------
    def host_info(self, name: str) -> HostInfo:
        info = self._hosts.get(name)
        if info is None:
            raise NotFound(f"no host {name!r} in the configuration")
        return info

    def check_statuses(self, host: str | None = None) -> list[CheckStatus]:
        """Current states, problems first (worst state, hard before soft), then by name."""
        mon = self.monitor
        if mon is None:
            return []
        found = mon.check_statuses(host)
        found.sort(key=lambda st: (-st.state.severity, st.state_type != "HARD", st.host,
                                   st.check))
        return found

    def hosts(self) -> list[dict[str, Any]]:
        """Every configured host: pool, worst state, counts by state, master/enabled."""
        by_host: dict[str, list[CheckStatus]] = {}
        for st in self.check_statuses():
            by_host.setdefault(st.host, []).append(st)
        out = []
        for info in self._hosts.values():
            out.append(self._host_summary(info, by_host.get(info.name, [])))
        out.sort(key=lambda h: (-State[h["state"]].severity, h["name"]))
        return out

    def _host_summary(self, info: HostInfo, checks: list[CheckStatus]) -> dict[str, Any]:
        counts = {s.name: 0 for s in State}
        for st in checks:
            counts[st.state.name] += 1
        worst = max((st.state for st in checks), key=lambda s: s.severity, default=State.OK)
        entry = self.pool_cache.get(info.pool)
        snap = entry.snapshot if entry else None
        hv = snap.host(info.name) if snap else None
        bmc = info.config.bmc
        return {"name": info.name, "pool": info.pool, "address": info.config.address,
                "bmc": f"{bmc.address}:{bmc.port}" if bmc else None,
                "state": worst.name, "checks": counts,
                "master": bool(hv and snap and hv.ref == snap.master),
                "enabled": hv.enabled if hv else None,
                "vms": len(snap.vms_on(hv.ref)) if hv and snap else None}

    def host(self, name: str) -> dict[str, Any]:
        """One host: its summary, every check with its latest reading, open incidents."""
        info = self.host_info(name)
        checks = self.check_statuses(name)
        doc = self._host_summary(info, checks)
        rows = []
        for st in checks:
            row = check_json(st)
            last = self.monitor.last_result(name, st.check) if self.monitor else None
            row["output"] = last.output if last else ""
            r = last.reading if last else None
            row["reading"] = None if r is None else {
                "kind": r.kind, "name": r.name, "value": r.value, "unit": r.unit,
                "warn": r.warn, "crit": r.crit, "warn_low": r.warn_low,
                "crit_low": r.crit_low, "status": r.status}
            rows.append(row)
        doc["checks_detail"] = rows
        doc["incidents"] = [i.to_json(timeline=False)
                            for i in self.incidents.list(host=name, limit=50)
                            if i.status != "resolved"]
        doc["downtimes"] = [d.to_json() for d in self.downtimes(host=name)]
        return doc

    def history(self, host: str, check: str, seconds: float = 3600.0,
                ) -> list[tuple[float, float | None, State]]:
        """(ts, value, state) of one check over the last ``seconds`` (for charts)."""
        self.host_info(host)
        if self.monitor is not None:
            self.monitor.samples.flush()  # what the board shows must be in the chart
        return self._samples.history(host, check, since=now() - seconds)

    def pools(self) -> list[dict[str, Any]]:
        return [self.pool(name) for name in self.pool_cache.names()]

    def pool(self, name: str) -> dict[str, Any]:
        entry = self.pool_cache.get(name)
        if entry is None:
            raise NotFound(f"no pool {name!r} in the configuration")
        doc = pool_json(entry)
        recent = RemediationJournal(self.store).recent(pool=name, limit=1)
        doc["last_remediation"] = remediation_json(recent[0]) if recent else None
        return doc

    def pool_of(self, host: str) -> str:
        """The configured pool of ``host`` ("" for a host outside the configuration)."""
        return self._pool_of.get(host, "")

    def last_result(self, host: str, check: str) -> CheckResult | None:
        """The check's latest result (output, reading), from the live monitor."""
        return self.monitor.last_result(host, check) if self.monitor is not None else None

    def open_incidents(self) -> dict[tuple[str, str], IncidentRecord]:
        """Unresolved incidents by (host, check), without timelines: the dashboard marks
        the board's rows with them (acknowledged or not) in one read per render."""
        found: dict[tuple[str, str], IncidentRecord] = {}
        for status in (Status.OPEN, Status.ACKNOWLEDGED, Status.IN_PROGRESS):
            for rec in self.incidents.list(status=status, limit=1_000_000):
                found.setdefault((rec.host, rec.check), rec)
        return found

    def downtimes(self, host: str | None = None) -> list[DowntimeRecord]:
        """Active and scheduled downtimes (one store read): the board marks what they
        cover, the host page lists them."""
        return Downtimes(self.store).current(host=host)

    def notifications(self, limit: int = 100, offset: int = 0, status: str | None = None,
                      ) -> list[dict[str, Any]]:
        """The notification ledger, newest first; ``channel`` is the redacted URL."""
        q = select(Notification).order_by(Notification.id.desc()).limit(limit).offset(offset)
        if status is not None:
            q = q.where(Notification.status == status)
        with self.store.session() as s:
            return [{"id": r.id, "key": r.key, "receiver": r.receiver, "channel": r.channel,
                     "severity": r.severity, "subject": r.subject, "status": r.status,
                     "attempts": r.attempts, "error": r.error, "created_at": r.created_at,
                     "ts": r.sent_at if r.sent_at is not None else r.created_at}
                    for r in s.scalars(q)]

    async def refresh_pool(self, name: str) -> dict[str, Any]:
        if self.pool_cache.get(name) is None:
            raise NotFound(f"no pool {name!r} in the configuration")
        await asyncio.to_thread(self.pool_cache.refresh, name)
        return self.pool(name)

    # -- actions --------------------------------------------------------------------------
    def schedule_downtime(self, host: str, who: str, *, ends_at: float,
                          starts_at: float | None = None, check: str = "",
                          comment: str = "") -> DowntimeRecord:
        """A downtime on a configured host (``NotFound`` otherwise), signed ``who``."""
        self.host_info(host)
        return Downtimes(self.store).schedule(host, ends_at=ends_at, starts_at=starts_at,
                                              check=check, author=who, comment=comment)

    def cancel_downtime(self, downtime_id: int, who: str) -> DowntimeRecord:
        return Downtimes(self.store).cancel(downtime_id, who)

    def acknowledge(self, incident_id: int, who: str, comment: str = "",
                    expires_in: float | None = None) -> IncidentRecord:
        """Acknowledge as ``who``: the notifier stops repeats and escalation."""
        expires = now() + expires_in if expires_in is not None else None
        return self.incidents.acknowledge(incident_id, who, comment, expires)

    async def maintenance(self, host: str, who: str, *, dry_run: bool = False,
                          shutdown: bool = False, wait: bool = False) -> dict[str, Any]:
        """Put ``host`` in maintenance (or plan it, with ``dry_run``) as ``who``.

        Returns once the plan is journaled: a dry run or an infeasible plan is complete
        then; a real one goes on in the background (follow it in the journal) unless
        ``wait``. Refused while the pool's lease is held by another remediation.
        """
        return await self._remediate(host, wait, lambda driver, on_planned: host_maintenance(
            driver, self.store, host, shutdown=shutdown, dry_run=dry_run,
            settings=self.settings, requested_by=who, on_planned=on_planned,
            lease_ttl=self.config.remediation.lease_ttl), dry_run=dry_run)

    async def exit_maintenance(self, host: str, who: str, *, restore: bool = False,
                               dry_run: bool = False, wait: bool = False) -> dict[str, Any]:
        """Take ``host`` out of maintenance as ``who``; with ``restore``, bring back the
        VMs its last maintenance moved away. Answers as :meth:`maintenance` does."""
        return await self._remediate(host, wait, lambda driver, on_planned: (
            host_exit_maintenance(
                driver, self.store, host, restore=restore, dry_run=dry_run,
                settings=self.settings, requested_by=who, on_planned=on_planned,
                lease_ttl=self.config.remediation.lease_ttl)), dry_run=dry_run)

    async def _remediate(
        self, host: str, wait: bool,
        run: Callable[[PoolDriver, Callable[[RemediationRecord], None]], MaintenanceOutcome],
        *, dry_run: bool,
    ) -> dict[str, Any]:
        info = self.host_info(host)
        planned: asyncio.Future[RemediationRecord] = asyncio.get_running_loop().create_future()
        loop = asyncio.get_running_loop()

        def settle(rec: RemediationRecord) -> None:
            if not planned.done():
                planned.set_result(rec)

        def on_planned(rec: RemediationRecord) -> None:
            loop.call_soon_threadsafe(settle, rec)

        def work() -> MaintenanceOutcome:
            driver = self.driver_for(info.pool)
            try:
                outcome = run(driver, on_planned)
                if not dry_run:
                    self.pool_cache.put(info.pool, driver.snapshot())
                return outcome
            finally:
                driver.close()

        task = asyncio.ensure_future(asyncio.to_thread(work))
        waited: set[asyncio.Future[Any]] = {task, planned}
        done, _ = await asyncio.wait(waited, timeout=PLAN_WAIT,
                                     return_when=asyncio.FIRST_COMPLETED)
        if planned not in done and task not in done and not wait:
            raise OperationRefused(f"{host}: no plan after {PLAN_WAIT:.0f} s")
        # A dry run or an infeasible plan is complete once planned: its outcome follows.
        complete = task in done or wait or planned.result().status in ("dry_run",
                                                                        "infeasible")
        if complete:
            outcome = await task  # raises what the remediation raised (lease held, …)
            return {**outcome.to_json(), "finished": True}
        _background.add(task)
        task.add_done_callback(_finished_in_background)
        rec = planned.result()
        return {"remediation": rec.id, "pool": rec.pool, "host": rec.host_name,
                "goal": rec.goal, "status": rec.status, "dry_run": rec.dry_run,
                "feasible": rec.plan.feasible,
                "steps": [{"title": s.title} for s in rec.plan.steps], "finished": False}

    def script_catalog(self) -> ScriptCatalog:
        """The vetted scripts directory of ``scripts:``; refused when none is configured."""
        if self.config.scripts is None:
            raise OperationRefused("no scripts: section in the configuration: running "
                                   "scripts is switched off")
        with self._catalog_lock:
            if self._catalog is None:
                from poolwarden.scripts.service import open_catalog

                self._catalog = open_catalog(self.config.scripts)
            return self._catalog

    async def run_script(self, host: str, script: str, args: list[str] | tuple[str, ...],
                         who: str) -> tuple[ScriptResult, int]:
        """Run a vetted script on a configured host over SSH, audited (see
        :func:`poolwarden.scripts.audit.run_audited`): the result and its audit row id."""
        from poolwarden.scripts.service import run_configured

        return await run_configured(self, host, script, list(args), who)


#: maintenance tasks that outlive their request (kept referenced until they finish)
_background: set[asyncio.Future[Any]] = set()


def _finished_in_background(task: asyncio.Future[Any]) -> None:
    """The journal has the outcome; a failure is also logged (nobody awaits it)."""
    _background.discard(task)
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("a remediation asked for by a person failed in the background: %s", exc)


def elapsed(since: float | None) -> str:
    """'12 s', '5 min', '3 h' ago: for pages and chat."""
    if since is None:
        return "never"
    d = max(0.0, time.time() - since)
    if d < 120:
        return f"{d:.0f} s"
    if d < 7200:
        return f"{d / 60:.0f} min"
    return f"{d / 3600:.0f} h"


__all__ = ["HostInfo", "Operations", "check_json", "elapsed", "pool_json",
           "remediation_json"]
