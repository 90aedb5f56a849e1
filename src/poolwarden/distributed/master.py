"""A master: the embedded pipeline for the partitions it owns (docs/distributed.md).

:class:`MasterMonitor` is the service's ``Monitor`` with three differences: it schedules
only the jobs of its partitions and *dispatches* them to their zone instead of running
them; it processes result batches from its partitions' consumers synchronously (state
engine → incidents → remediation → alerts) and acknowledges them only once the check
states they changed are saved (fenced by the partition lease); and it hands partitions
over — saving, or restoring, the state engine's records, the firing alerts and the HARD
problems the remediation engine follows.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from poolwarden.collect.jobs import JobSpec, partition_of
from poolwarden.config.models import Config
from poolwarden.distributed.cluster import Cluster
from poolwarden.distributed.wire import RejectCounter, ResultBatch, WorkItem
from poolwarden.distributed.zones import ZONE_CHECK, ZoneWatch, zone_host
from poolwarden.errors import PoolwardenError
from poolwarden.evaluate.state import AGENT_CHECK, CheckStatus
from poolwarden.evaluate.state import CheckConfig as EngineCheckConfig
from poolwarden.messages import CheckResult, State, StateChange, StateType
from poolwarden.remediate.executor import ExecutorSettings
from poolwarden.service import MetricFamily, Monitor
from poolwarden.store.checkstate import CheckStates, StoredCheck
from poolwarden.store.db import Store
from poolwarden.store.lease import LeaseLost

if TYPE_CHECKING:
    from poolwarden.bus.nats import Consumer, Delivery, NatsTransport

log = logging.getLogger("poolwarden.master")
#: how fresh other masters' check states shown by this one are (seconds), how far back
#: an incremental read starts before the newest row seen, and how often all are read
STORED_TTL, STORED_MARGIN, STORED_FULL_EVERY = 3.0, 10.0, 600.0
Key = tuple[str, str]


class MasterMonitor(Monitor):
    def __init__(self, config: Config, store: Store, transport: NatsTransport,
                 cluster: Cluster, *, executor: ExecutorSettings | None = None,
                 rejects: RejectCounter | None = None) -> None:
        self.transport, self.cluster, self.rejects = transport, cluster, rejects
        self.partition_count = config.cluster.partitions
        self.owned: set[int] = set()
        self.saved_states = CheckStates(store)
        self._lock = asyncio.Lock()
        self._dirty: dict[int, set[Key]] = {}
        self._pending: dict[int, list[Delivery]] = {}
        self._persisted: dict[Key, tuple[Any, ...]] = {}
        self._consumers: dict[int, Consumer] = {}
        self._stored: dict[Key, StoredCheck] = {}  # other masters' checks, for the board
        self._stored_at = self._stored_full = self._stored_mark = 0.0
        self._stored_lock = threading.Lock()
        super().__init__(config, store, executor=executor)
        zones = {spec.zone for spec in self.catalog.values()}
        self.zones = ZoneWatch(zones, config.cluster.zone_timeout, time.time())
        self._zone_hosts: dict[str, set[str]] = {}
        self._map_zones()
        for zone in zones:
            self._per_check[(zone_host(zone), ZONE_CHECK)] = EngineCheckConfig(
                max_attempts=1, check_interval=config.cluster.zone_timeout)

    def _map_zones(self) -> None:
        self._zone_hosts = {}
        for spec in self.catalog.values():
            self._zone_hosts.setdefault(spec.zone, set()).add(spec.host)

    def discover(self) -> list[str]:
        changed = super().discover()
        if changed:
            self._map_zones()
        return changed

    def forget_hosts(self, hosts: set[str]) -> None:
        """Also from ``check_state``, so no master's board shows them any more."""
        super().forget_hosts(hosts)
        for key in [k for k in self._persisted if k[0] in hosts]:
            del self._persisted[key]
        with self._stored_lock:
            self._stored = {k: v for k, v in self._stored.items() if k[0] not in hosts}
        task = asyncio.ensure_future(asyncio.to_thread(self.saved_states.forget_hosts, hosts))
        self._ticks.add(task)
        task.add_done_callback(self._ticks.discard)

    # -- which partition -------------------------------------------------------------------
    def schedules(self, spec: JobSpec) -> bool:
        return spec.partition in self.owned

    def hosts_of(self, partition: int) -> set[str]:
        hosts = {s.host for s in self.catalog.values() if s.partition == partition}
        hosts |= {zone_host(z) for z in self.zones.zones
                  if partition_of(zone_host(z), self.partition_count) == partition}
        return hosts

    # -- work out --------------------------------------------------------------------------
    async def run_job(self, spec: JobSpec) -> None:
        now = time.time()
        await self.transport.publish_work(WorkItem(
            job=spec.id, zone=spec.zone, host=spec.host, partition=spec.partition,
            issued_at=now, deadline=now + spec.interval,
            params={**spec.params, "pool": spec.pool}))

    # -- results in ------------------------------------------------------------------------
    async def on_results(self, partition: int, deliveries: list[Delivery]) -> None:
        """A batch from ``partition``'s consumer: judged now, acknowledged after the
        next state save (see :meth:`flush`)."""
        results: list[CheckResult] = []
        keep: list[Delivery] = []
        now = time.time()
        for d in deliveries:
            msg = d.message
            if not isinstance(msg, ResultBatch) or msg.partition != partition:
                log.warning("dropping a %s on partition %d's subject", type(msg).__name__,
                            partition)
                await d.term()
                continue
            self.zones.seen(msg.zone, msg.sender, now)
            results.extend(msg.check_results())
            keep.append(d)
        async with self._lock:
            if partition not in self.owned:
                return  # given up meanwhile: unacknowledged, the new owner gets them
            changes = self.evaluate(results)
            self._mark(partition, results, changes)
            if changes:
                await self.record(changes)
            self._pending.setdefault(partition, []).extend(keep)

    def _mark(self, partition: int, results: Iterable[CheckResult],
              changes: Iterable[StateChange]) -> None:
        dirty = self._dirty.setdefault(partition, set())
        for r in results:
            dirty.add((r.host, r.check))
            if r.check.startswith("snmp/"):
                dirty.add((r.host, AGENT_CHECK))
        dirty.update((c.host, c.check) for c in changes)

    async def flush(self) -> None:
        """Save changed check states per partition (fenced), then acknowledge what led
        to them: a crash before the save leaves the results to the next owner."""
        async with self._lock:
            work = []
            for p in sorted(self.owned):
                rows = []
                for key in self._dirty.pop(p, set()):
                    sv = self.engine.saved(*key)
                    if sv is None or self._persisted.get(key) == sv.essence():
                        continue
                    last = self._last.get(key)
                    cfg = self._per_check.get(key) or self._snmp_default
                    rows.append((sv, cfg.max_attempts, last.output if last else "",
                                 last.reading if last else None))
                work.append((p, rows, self._pending.pop(p, [])))
        if not any(rows or acks for _, rows, acks in work):
            return
        await asyncio.to_thread(self.samples.flush)
        for p, rows, acks in work:
            try:
                await asyncio.to_thread(self.saved_states.save, p, rows, self.cluster.fence(p))
            except LeaseLost as exc:
                log.error("partition %d: %s; giving it up at once", p, exc)
                await self.give(p, lost=True)
                continue
            except PoolwardenError as exc:  # the store blinked: keep all for the next try
                log.error("partition %d: cannot save check states: %s", p, exc)
                async with self._lock:
                    self._dirty.setdefault(p, set()).update((r[0].host, r[0].check)
                                                            for r in rows)
                    self._pending.setdefault(p, [])[:0] = acks
                continue
            for sv, *_ in rows:
                self._persisted[(sv.host, sv.check)] = sv.essence()
            for d in acks:
                await d.ack()

    # -- partitions in and out ------------------------------------------------------------
    async def gain(self, partition: int) -> None:
        """Take a partition over: its checks' states, alerts, problems, jobs, results."""
        stored = await asyncio.to_thread(self.saved_states.load, [partition])
        await asyncio.to_thread(self.incidents.reload)
        async with self._lock:
            self.engine.restore(s.saved for s in stored)
            for s in stored:
                key = (s.saved.host, s.saved.check)
                self._persisted[key] = s.saved.essence()
                self._checks_of.setdefault(key[0], set()).add(key[1])
                self._last[key] = CheckResult(key[0], key[1], s.saved.state, s.output,
                                              s.saved.last_check, reading=s.reading)
            self.owned.add(partition)
            problems = [_problem(s) for s in stored
                        if s.saved.state is not State.OK and s.saved.hard]
            if problems:
                await self.remediation.handle(problems)
                alerts = self.alerts.build(problems, self.incidents)
                if alerts:
                    await self.notifier.submit(alerts)
                    self._wake_notifier()
            for spec in self.catalog.values():
                if spec.partition == partition:
                    self.scheduler.add(self.job_of(spec))
        c = self.config.cluster
        self._consumers[partition] = self.transport.consume(
            f"results-{partition}", f"{c.prefix}.results.{partition}",
            lambda ds: self.on_results(partition, ds), batch=500, ack_wait=30.0)
        for zone, down in [(z, True) for z in self.zones.down()]:
            await self._zone_changed(zone, down, only=partition)
        log.info("partition %d: taken over (%d checks restored, %d problems)", partition,
                 len(stored), len(problems))

    async def give(self, partition: int, *, lost: bool) -> None:
        """Give a partition up: saved first unless ``lost`` (then nothing more of it may
        be written, and what was not acknowledged goes to the next owner)."""
        consumer = self._consumers.pop(partition, None)
        if consumer is not None:
            await consumer.stop()
        for spec in self.catalog.values():
            if spec.partition == partition:
                self.scheduler.remove(spec.id)
        if not lost:
            await self.flush()
        hosts = self.hosts_of(partition)
        async with self._lock:
            self.owned.discard(partition)
            self._dirty.pop(partition, None)
            self._pending.pop(partition, None)
            self.engine.forget(hosts)
            for key in [k for k in self._persisted if k[0] in hosts]:
                del self._persisted[key]
            for host in hosts:
                self._checks_of.pop(host, None)
            self.notifier.grouper.forget(self.alerts.forget(hosts))
            self.remediation.forget(hosts)
        if not lost:
            await asyncio.to_thread(self.cluster.release, partition)
        log.info("partition %d: %s", partition, "lost" if lost else "handed over")

    # -- zones -----------------------------------------------------------------------------
    async def check_zones(self) -> None:
        for zone, down in self.zones.changes(time.time()):
            log.warning("zone %s %s", zone, "UNREACHABLE" if down else "reachable again")
            await self._zone_changed(zone, down)

    async def _zone_changed(self, zone: str, down: bool, only: int | None = None) -> None:
        hosts = self._zone_hosts.get(zone, set())
        self.engine.fold_hosts(hosts, down)
        zh = zone_host(zone)
        p = partition_of(zh, self.partition_count)
        if p not in self.owned or (only is not None and p != only):
            return
        sats = ", ".join(self.zones.satellites(zone, time.time())) or "none"
        output = (f"no satellite of zone {zone} answers ({len(hosts)} hosts' checks are "
                  "UNKNOWN)" if down else f"zone {zone} reachable (satellites: {sats})")
        result = CheckResult(zh, ZONE_CHECK, State.CRITICAL if down else State.OK, output,
                             time.time())
        async with self._lock:
            changes = self.evaluate([result])
            self._mark(p, [result], changes)
            if changes:
                await self.record(changes)

    # -- what people see ------------------------------------------------------------------
    def metric_families(self) -> list[MetricFamily]:
        t = self.transport
        rejected = self.rejects.counts() if self.rejects is not None else {}
        return [*super().metric_families(),
                ("poolwarden_partitions_owned", "gauge", "Partitions this master owns.",
                 [({}, float(len(self.owned)))]),
                ("poolwarden_zone_up", "gauge", "Whether a satellite of the zone answers.",
                 [({"zone": z}, float(z not in self.zones.down()))
                  for z in sorted(self.zones.zones)]),
                ("poolwarden_bus_rejected_total", "counter",
                 "Messages from the bus rejected as malformed or unknown.",
                 [({"kind": k, "reason": r}, float(n))
                  for (k, r), n in sorted(rejected.items())]),
                ("poolwarden_bus_dropped_total", "counter",
                 "Work items the bus could not take (issued again at the next interval).",
                 [({"what": "work"}, float(t.dropped_work))])]

    def check_statuses(self, host: str | None = None) -> list[CheckStatus]:
        """Owned checks live, the others as their owners last saved them."""
        mine = super().check_statuses(host)
        seen = {(st.host, st.check) for st in mine}
        folded = self.engine.folded_hosts()
        return mine + [_status(s, s.saved.host in folded)
                       for key, s in self._others().items()
                       if key not in seen and (host is None or key[0] == host)]

    def last_result(self, host: str, check: str) -> CheckResult | None:
        """Owned checks' last result; another master's as it last saved it."""
        found = super().last_result(host, check)
        if found is not None:
            return found
        s = self._others().get((host, check))
        if s is None:
            return None
        return CheckResult(host, check, s.saved.state, s.output, s.saved.last_check,
                           reading=s.reading)

    def _others(self) -> dict[Key, StoredCheck]:
        """Other masters' checks as they saved them: read when somebody looks (the
        dashboard, the API), at most every few seconds, only rows changed since the last
        read, and all of them again now and then (to drop hosts that went away)."""
        now = time.time()
        with self._stored_lock:
            if now - self._stored_at > STORED_TTL:
                full = now - self._stored_full > STORED_FULL_EVERY
                # updated_at comes from the writers' clocks: read back a margin
                rows = self.saved_states.load(
                    since=None if full else self._stored_mark - STORED_MARGIN)
                stored = {} if full else dict(self._stored)
                for r in rows:
                    stored[(r.saved.host, r.saved.check)] = r
                    self._stored_mark = max(self._stored_mark, r.updated_at)
                self._stored, self._stored_at = stored, now
                if full:
                    self._stored_full = now
            owned = set(self.owned)
            return {k: v for k, v in self._stored.items() if v.partition not in owned}


def _problem(s: StoredCheck) -> StateChange:
    """A restored HARD problem as the change that made it one, for the engines that
    follow problems (its ``ts`` is the original change time, so alert keys match)."""
    sv = s.saved
    return StateChange(sv.host, sv.check, State.OK, sv.state, StateType.HARD, sv.attempt,
                       s.max_attempts, sv.last_change, s.output, True, sv.flapping,
                       s.reading)


def _status(s: StoredCheck, folded: bool) -> CheckStatus:
    """Another master's check as its owner saved it (UNKNOWN while its zone is down)."""
    sv = s.saved
    return CheckStatus(sv.host, sv.check, State.UNKNOWN if folded else sv.state,
                       StateType.HARD if sv.hard else StateType.SOFT, sv.attempt,
                       s.max_attempts, sv.flapping, 0.0, folded or bool(sv.unreach),
                       sv.last_check, sv.last_change)


__all__ = ["MasterMonitor"]
