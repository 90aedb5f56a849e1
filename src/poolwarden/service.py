"""The embedded service: collect → evaluate → incidents in one process.

``poolwarden run`` builds a :class:`Monitor` from ``poolwarden.yaml``. The stages only
meet on the bus (``RESULTS``, ``CHANGES``) and in the store, so the distributed mode can
move collection to satellites without touching evaluation or incidents.

I/O discipline: SNMP and plugins are asyncio; the store (SQLAlchemy, blocking) is only
touched from worker threads (``asyncio.to_thread``): incident writes per batch of
changes, sample writes per batch of readings on a timer, archiving on a timer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from poolwarden.bus.base import CHANGES, RESULTS, Bus
from poolwarden.bus.memory import MemoryBus
from poolwarden.collect.jobs import DiscoveredHost, JobRunner, JobSpec, build_jobs
from poolwarden.collect.scheduler import Job, Scheduler
from poolwarden.config.models import Config
from poolwarden.evaluate.rules import MatchContext, RuleConfig, match, problem_kind
from poolwarden.evaluate.state import AGENT_CHECK, CheckStatus, StateEngine
from poolwarden.evaluate.state import CheckConfig as EngineCheckConfig
from poolwarden.hypervisor.base import PoolDriver
from poolwarden.hypervisor.cache import PoolCache
from poolwarden.hypervisor.factory import pool_driver_for
from poolwarden.incidents.manager import IncidentManager
from poolwarden.incidents.model import dedup_key
from poolwarden.incidents.retention import archive, prune
from poolwarden.incidents.samples import SampleWriter
from poolwarden.messages import Alert, CheckResult, State, StateChange
from poolwarden.notify.notifier import Notifier
from poolwarden.remediate.engine import RemediationEngine, host_pools
from poolwarden.remediate.executor import ExecutorSettings
from poolwarden.scripts.service import configured_scripts
from poolwarden.store.db import Store
from poolwarden.store.downtimes import Downtimes

log = logging.getLogger("poolwarden")
#: (name, type, help, samples of (labels, value)) for the /metrics exposition
MetricFamily = tuple[str, str, str, list[tuple[dict[str, str], float]]]
SAMPLE_FLUSH_EVERY = 2.0
STATUS_EVERY = 60.0
ACK_SYNC_EVERY = 5.0


class AlertBuilder:
    """StateChange → the notifier's Alert: labels to route on, severity from the rules.

    The severity of a problem is the one its matching rule gives (a failed PSU the rules
    call ``warning`` is emailed, not paged); without a rule, CRITICAL is critical and
    anything else a warning. A resolved alert keeps the labels and start of its firing one.
    """

    def __init__(self, rules: Sequence[RuleConfig], pools: dict[str, str]) -> None:
        self.rules, self.pools = list(rules), pools
        self._firing: dict[str, Alert] = {}

    def build(self, changes: Sequence[StateChange], incidents: IncidentManager) -> list[Alert]:
        alerts = []
        for c in changes:
            if not c.hard_change:
                continue
            key = dedup_key(c.host, c.check)
            summary = c.output.splitlines()[0] if c.output else c.new_state.name
            if c.new_state is State.OK:
                firing = self._firing.pop(key, None)
                if firing is not None:
                    alerts.append(Alert(key, firing.labels, summary, False, firing.starts_at,
                                        c.ts, firing.incident_id))
                continue
            pool = self.pools.get(c.host, c.labels.get("pool", ""))
            decisions = match(self.rules, c, MatchContext(pool=pool))
            severity = str(decisions[0].severity) if decisions else (
                "critical" if c.new_state is State.CRITICAL else "warning")
            labels = {"severity": severity, "host": c.host, "pool": pool, "check": c.check,
                      "kind": problem_kind(c), "state": c.new_state.name}
            previous = self._firing.get(key)
            alert = Alert(key, labels, summary, True,
                          previous.starts_at if previous else c.ts, c.ts,
                          incidents.open_id(c.host, c.check))
            self._firing[key] = alert
            alerts.append(alert)
        return alerts

    def forget(self, hosts: set[str]) -> list[str]:
        """Drop the firing alerts of ``hosts`` (their partition moved); their keys."""
        keys = [k for k, a in self._firing.items() if a.labels.get("host") in hosts]
        for k in keys:
            del self._firing[k]
        return keys

    def acknowledged(self, incident_ids: set[int], now: float) -> list[Alert]:
        """Firing alerts whose incident was acknowledged (or un-acknowledged) since they
        were last submitted: an acknowledgement stops repeats and escalation."""
        changed = []
        for key, alert in self._firing.items():
            ack = alert.incident_id in incident_ids
            if ack != alert.acknowledged:
                updated = self._firing[key] = replace(alert, acknowledged=ack, ts=now)
                changed.append(updated)
        return changed


@dataclass
class MonitorStats:
    results: int = 0
    changes: int = 0
    incidents_opened: int = 0
    incidents_resolved: int = 0
    poll_errors: int = 0
    recent: list[StateChange] = field(default_factory=list)


class Monitor:
    def __init__(self, config: Config, store: Store, *, bus: Bus | None = None,
                 notifier: Notifier | None = None,
                 driver_for: Callable[[str], PoolDriver] | None = None,
                 executor: ExecutorSettings | None = None) -> None:
        self.config, self.store = config, store
        m = config.monitoring
        self._snmp_default = EngineCheckConfig(
            max_attempts=m.max_attempts, check_interval=m.snmp_interval,
            retry_interval=m.retry_interval, flapping_low=m.flap_low, flapping_high=m.flap_high)
        self._per_check: dict[tuple[str, str], EngineCheckConfig] = {}
        self.engine = StateEngine(self._snmp_default, config_for=self._config_for)
        self.incidents = IncidentManager(store)
        self.samples = SampleWriter(store, batch_size=10_000, max_delay=1e9)
        self.scheduler = Scheduler(concurrency=m.concurrency)
        self.bus: Bus = bus or MemoryBus()
        self.notifier = notifier or Notifier(config.notify, store)
        pools = host_pools(config.pools)
        self.alerts = AlertBuilder(config.rules, pools)
        self.driver_for = driver_for or pool_driver_for(
            config.pools, ssh_default=config.scripts.ssh if config.scripts else None)
        #: the last known state of each pool that poolwarden can read, for people
        self.pools = PoolCache([p.name for p in config.pools if p.xapi or p.xe_ssh],
                               self.driver_for)
        self.remediation = RemediationEngine(
            config.remediation, config.rules, store,
            driver_for=self.driver_for, incidents=self.incidents,
            send=self.notifier.send, pools=pools, settings=executor,
            on_finished=self._remediation_finished,
            scripts=configured_scripts(config, store))
        self.bus.subscribe(RESULTS, self._evaluate, name="evaluate")
        self.bus.subscribe(CHANGES, self._record, name="incidents")
        self.stats = MonitorStats()
        self.runner = JobRunner(config)
        self.runner.check()  # bad SNMP settings are a configuration error at start-up
        self._checks_of: dict[str, set[str]] = {}
        self._last: dict[tuple[str, str], CheckResult] = {}
        self._ticks: set[asyncio.Future[Any]] = set()
        self._build_jobs()

    # -- configuration -> jobs ------------------------------------------------------------
    def _config_for(self, host: str, check: str) -> EngineCheckConfig | None:
        return self._per_check.get((host, check))

    #: how many partitions the catalog is cut into (1: this process does everything)
    partition_count = 1

    def schedules(self, spec: JobSpec) -> bool:
        """Whether this process schedules ``spec`` (a master: only its partitions')."""
        return True

    def _build_jobs(self) -> None:
        m = self.config.monitoring
        self.catalog = build_jobs(self.config, partitions=self.partition_count)
        for spec in self.catalog.values():
            self._configure(spec)
            if self.schedules(spec):
                self.scheduler.add(self.job_of(spec))
        self.scheduler.add(Job("store/samples", SAMPLE_FLUSH_EVERY, self._flush_samples))
        r = self.config.retention
        self.scheduler.add(Job("store/retention", r.every, self._archive, timeout=600.0))
        self.scheduler.add(Job("incidents/ack-expiry", 60.0, self._expire_acks))
        self.scheduler.add(Job("self/status", STATUS_EVERY, self._report))
        self.scheduler.add(Job("notify/tick", 1.0, self.notifier.tick))
        self.scheduler.add(Job("notify/acks", ACK_SYNC_EVERY, self._sync_acks))
        self.scheduler.add(Job("remediate/tick", 2.0, self.remediation.tick, timeout=60.0))
        if self.pools.names():
            self.scheduler.add(Job("pools/refresh", m.pool_interval, self._refresh_pools,
                                   timeout=300.0))
        log.info("monitoring %d jobs (concurrency %d)", len(self.catalog), m.concurrency)

    def _configure(self, spec: JobSpec) -> None:
        """The state engine's settings for the checks of one job."""
        m = self.config.monitoring
        if spec.kind == "plugin":
            self._per_check[(spec.host, spec.check_prefix)] = EngineCheckConfig(
                max_attempts=spec.max_attempts or m.max_attempts,
                check_interval=spec.interval,
                retry_interval=spec.retry_interval or m.retry_interval,
                flapping_low=m.flap_low, flapping_high=m.flap_high)
        elif spec.interval != m.snmp_interval:
            self._per_check[(spec.host, AGENT_CHECK)] = EngineCheckConfig(
                max_attempts=self._snmp_default.max_attempts, check_interval=spec.interval,
                retry_interval=self._snmp_default.retry_interval)

    def job_of(self, spec: JobSpec) -> Job:
        """The scheduler's job for a catalog entry: run it (here) when due."""
        return Job(spec.id, spec.interval, lambda: self.run_job(spec), timeout=spec.timeout,
                   next_interval=lambda: self._next_interval(spec.host, spec.check_prefix))

    async def run_job(self, spec: JobSpec) -> None:
        """Run one job in this process and hand its results to evaluation (a master
        dispatches the job to its zone instead)."""
        await self.bus.publish(RESULTS, await self.runner.run(spec))

    def _next_interval(self, host: str, prefix: str) -> float | None:
        """The retry interval while any of the job's checks is in a SOFT problem."""
        checks = [c for c in self._checks_of.get(host, ()) if c.startswith(prefix)]
        return min((self.engine.next_interval(host, c) for c in checks), default=None)

    # -- the pipeline ---------------------------------------------------------------------
    def evaluate(self, batch: Sequence[CheckResult]) -> list[StateChange]:
        """Results → state changes (the state engine; no I/O but the samples buffer)."""
        now = time.time()
        changes: list[StateChange] = []
        for result in batch:
            self._checks_of.setdefault(result.host, set()).add(result.check)
            self._last[result.host, result.check] = result
            if result.unreachable:
                self.stats.poll_errors += 1
            changes.extend(self.engine.process(result, now))
            self.samples.add(result)
        self.stats.results += len(batch)
        self.stats.changes += len(changes)
        return changes

    async def _evaluate(self, batch: Sequence[CheckResult]) -> None:
        changes = self.evaluate(batch)
        if changes:
            await self.bus.publish(CHANGES, changes)

    async def _record(self, batch: Sequence[StateChange]) -> None:
        await self.record(batch)

    async def record(self, batch: Sequence[StateChange]) -> None:
        """State changes → incidents (durable first), remediation, alerts."""
        for c in batch:
            log.info("%s %s %s %s → %s: %s", c.state_type, c.host, c.check, c.old_state.name,
                     c.new_state.name, c.output.splitlines()[0] if c.output else "")
        result = await asyncio.to_thread(self.incidents.handle_many, batch)
        self.stats.incidents_opened += result.opened
        self.stats.incidents_resolved += result.resolved
        if result.written:
            log.warning("incidents: %d opened, %d updated, %d resolved (ids %s)",
                        result.opened, result.updated, result.resolved,
                        ", ".join(map(str, result.incident_ids)))
        self.stats.recent = [*self.stats.recent[-99:], *batch]
        # The incident exists before the engine looks for it (timeline events).
        await self.remediation.handle(batch)
        alerts = self.alerts.build(batch, self.incidents)
        if alerts:
            await self.notifier.submit(alerts)
            self._wake_notifier()

    def _wake_notifier(self) -> None:
        """Tick the notifier when its next notification is due (group_wait after a new
        problem), not at the next whole-second tick: paging latency is the point."""
        now = time.time()
        due = self.notifier.grouper.next_due(now)
        if due is not None:
            loop = asyncio.get_running_loop()
            loop.call_later(max(0.0, due - now) + 0.005, self._spawn_tick)

    def _spawn_tick(self) -> None:
        task = asyncio.ensure_future(self.notifier.tick())
        self._ticks.add(task)
        task.add_done_callback(self._ticks.discard)

    async def _refresh_pools(self) -> None:
        await asyncio.to_thread(self.pools.refresh_all)
        self.discover()

    def discover(self) -> list[str]:
        """Keep the check set current: pool members that the hypervisor reports and the
        configuration does not list get the plugin checks whose ``hosts`` match them
        (addressed by the address XAPI gives); members that left lose theirs. Returns
        the ids of the jobs added and removed."""
        found: dict[str, list[DiscoveredHost]] = {}
        for name in self.pools.names():
            entry = self.pools.get(name)
            if entry is not None and entry.snapshot is not None:
                found[name] = [DiscoveredHost(h.name, h.address or h.name)
                               for h in entry.snapshot.hosts]
        catalog = build_jobs(self.config, partitions=self.partition_count, discovered=found)
        gone = [j for j in self.catalog if j not in catalog]
        new = [j for j in catalog if j not in self.catalog]
        for job_id in gone:
            self.scheduler.remove(job_id)
        for job_id in new:
            spec = catalog[job_id]
            self._configure(spec)
            if self.schedules(spec):
                self.scheduler.add(self.job_of(spec))
        if gone or new:
            log.warning("discovery: %d check jobs added (%s), %d removed (%s)", len(new),
                        ", ".join(new[:5]), len(gone), ", ".join(gone[:5]))
        left = {self.catalog[j].host for j in gone} - {s.host for s in catalog.values()}
        self.catalog = catalog
        if left:
            self.forget_hosts(left)
        return new + gone

    def forget_hosts(self, hosts: set[str]) -> None:
        """Hosts that left their pool: their checks leave the board (and the engine)."""
        self.engine.forget(hosts)
        for host in hosts:
            self._checks_of.pop(host, None)
        for key in [k for k in self._last if k[0] in hosts]:
            del self._last[key]

    def _remediation_finished(self, pool: str) -> None:
        """A remediation changed a pool: the pool page must show it now, not in 30 s."""
        if self.pools.get(pool) is not None:
            task = asyncio.ensure_future(asyncio.to_thread(self.pools.refresh, pool))
            self._ticks.add(task)
            task.add_done_callback(self._ticks.discard)

    async def _flush_samples(self) -> None:
        await asyncio.to_thread(self.samples.flush)

    def status_line(self) -> str:
        """The service's own health in one line: states, lateness, backlog."""
        sch = self.scheduler.stats
        states = ", ".join(f"{k.name} {v}" for k, v in self.states().items())
        depth = ", ".join(f"{k} {v}" for k, v in self.bus.depths().items())
        return (f"checks: {states}; scheduler: {sch.runs} runs, lateness max "
                f"{sch.lateness_max:.2f}s mean {sch.lateness_mean:.3f}s, {sch.late_runs} late, "
                f"{sch.overruns} overruns, {sch.timeouts} timeouts; queues: {depth}; "
                f"samples pending {self.samples.pending()}")

    async def _report(self) -> None:
        log.info("%s", self.status_line())

    async def _sync_acks(self) -> None:
        """People acknowledge incidents elsewhere (CLI, API): tell the notifier."""
        acked = await asyncio.to_thread(
            lambda: {i.id for i in self.incidents.list(status="acknowledged", limit=100_000)})
        changed = self.alerts.acknowledged(acked, time.time())
        if changed:
            await self.notifier.submit(changed)

    async def _expire_acks(self) -> None:
        expired = await asyncio.to_thread(self.incidents.expire_acknowledgements)
        if expired:
            log.info("%d acknowledgements expired", expired)

    async def _archive(self) -> None:
        r, t = self.config.retention, time.time()
        stats = await asyncio.to_thread(
            archive, self.store, resolved_older_than=r.resolved_incidents,
            samples_older_than=r.samples, now=t)
        pruned = await asyncio.to_thread(
            prune, self.store, now=t, archived_incidents=r.archived_incidents,
            archived_samples=r.archived_samples, notifications=r.notifications)
        downtimes = 0
        if r.notifications is not None:  # ended downtimes go with the notification log
            downtimes = await asyncio.to_thread(Downtimes(self.store).prune,
                                                t - r.notifications)
        log.info("retention: %s; deleted %s and %d ended downtimes", stats, pruned, downtimes)

    async def run(self, stop: asyncio.Event) -> None:
        await self.bus.start()
        try:
            await self.scheduler.run(stop)
        finally:
            await self.bus.close()
            await self.remediation.close()
            await self.notifier.aclose()
            await asyncio.to_thread(self.samples.flush)

    def metric_families(self) -> list[MetricFamily]:
        """Counters of this process for /metrics (a master adds its own)."""
        return [("poolwarden_results_total", "counter", "Check results judged.",
                 [({}, float(self.stats.results))]),
                ("poolwarden_state_changes_total", "counter", "State changes emitted.",
                 [({}, float(self.stats.changes))])]

    def check_statuses(self, host: str | None = None) -> list[CheckStatus]:
        """Current states (of ``host`` only, if given), unsorted."""
        return [st for h, c in self.checks(host)
                if (st := self.engine.status(h, c)) is not None]

    def checks(self, host: str | None = None) -> list[tuple[str, str]]:
        """Every (host, check) seen so far (of ``host`` only, if given): what the API and
        the dashboard list."""
        if host is not None:
            return [(host, c) for c in list(self._checks_of.get(host, ()))]
        return [(h, c) for h, cs in list(self._checks_of.items()) for c in list(cs)]

    def last_result(self, host: str, check: str) -> CheckResult | None:
        return self._last.get((host, check))

    def readings(self) -> list[CheckResult]:
        """The latest result of every sensor check that carries a reading (for /metrics)."""
        return [r for r in list(self._last.values())
                if r.reading is not None and r.reading.value is not None]

    def states(self) -> dict[State, int]:
        """Checks by current state (for status lines and /metrics)."""
        counts = dict.fromkeys(State, 0)
        for host, checks in self._checks_of.items():
            for check in checks:
                st = self.engine.status(host, check)
                if st is not None:
                    counts[st.state] += 1
        return counts
