"""A zone's worker: work items in, checks run, result batches out.

A satellite is a worker and a heartbeat; each master also runs one for the zone
``master`` (pools that name no zone). Several workers of one zone share its durable
consumer, so each work item goes to one of them, and an item a dead worker had taken is
redelivered to another after ``ack_wait``. A work item is acknowledged only after its
results are published (or buffered by the transport), so a check is never lost with the
process that ran it — at worst it runs twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from poolwarden.collect.jobs import JobRunner, JobSpec, build_jobs
from poolwarden.config.models import Config
from poolwarden.distributed.wire import ResultBatch, WireResult, WorkItem
from poolwarden.errors import PoolwardenError
from poolwarden.evaluate.state import AGENT_CHECK
from poolwarden.messages import CheckResult, State

if TYPE_CHECKING:
    from poolwarden.bus.nats import Delivery, NatsTransport

log = logging.getLogger("poolwarden.worker")
LATENESS_WINDOW = 60.0


@dataclass
class WorkerStats:
    runs: int = 0
    stale: int = 0  # items dropped past their deadline
    failed: int = 0  # jobs this process could not run (reported UNKNOWN)
    published: int = 0
    inflight: int = 0
    #: (when, how late) of the items started in the last LATENESS_WINDOW seconds
    lateness: deque[tuple[float, float]] = field(default_factory=deque)


def spec_of(item: WorkItem, known: dict[str, JobSpec]) -> JobSpec:
    """The job a work item names: this process's catalog entry, else one built from the
    item's params (a pool member found by discovery that this config does not list)."""
    spec = known.get(item.job)
    if spec is not None:
        return spec
    check = item.params.get("check", "")
    if item.job.startswith("snmp/"):
        return JobSpec(item.job, "snmp", item.host, item.params.get("pool", ""), item.zone,
                       item.partition, 60.0, 30.0, "snmp/", dict(item.params))
    prefix = f"plugin/{check}"
    return JobSpec(item.job, "plugin", item.host, item.params.get("pool", ""), item.zone,
                   item.partition, 60.0, 30.0, prefix, dict(item.params))


class Worker:
    def __init__(self, config: Config, transport: NatsTransport, *, zone: str, sender: str,
                 concurrency: int | None = None) -> None:
        self.config, self.transport, self.zone, self.sender = config, transport, zone, sender
        self.runner = JobRunner(config)
        self.catalog = build_jobs(config, partitions=config.cluster.partitions)
        self.stats = WorkerStats()
        self._slots = concurrency or config.monitoring.concurrency
        self._sem = asyncio.Semaphore(self._slots)
        self._tasks: set[asyncio.Task[None]] = set()
        self._consumer: Any = None

    async def start(self) -> None:
        c = self.config.cluster
        # A small pull: items wait for a free slot here, not in this process's hands, so
        # another satellite of the zone takes them meanwhile and none outlives ack_wait.
        self._consumer = self.transport.consume(
            f"work-{self.zone}", f"{c.prefix}.work.{self.zone}", self._handle,
            batch=max(1, min(50, self._slots)), ack_wait=30.0)

    async def _handle(self, deliveries: list[Delivery]) -> None:
        for d in deliveries:
            item = d.message
            if not isinstance(item, WorkItem):
                await d.term()
                continue
            now = time.time()
            if item.expired(now):
                self.stats.stale += 1
                await d.ack()  # a backlog is not replayed as a burst
                continue
            late = self.stats.lateness
            late.append((now, max(0.0, now - item.issued_at)))
            while late and late[0][0] < now - LATENESS_WINDOW:
                late.popleft()
            await self._sem.acquire()
            task = asyncio.create_task(self._run(item, d))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, item: WorkItem, delivery: Delivery) -> None:
        self.stats.inflight += 1
        try:
            results = await self._execute(item)
            batch = self._batch(item, results)
            await self.transport.publish_results(batch)
            self.stats.published += 1
            await delivery.ack()
        finally:
            self.stats.inflight -= 1
            self._sem.release()

    def _batch(self, item: WorkItem, results: list[CheckResult]) -> ResultBatch:
        """The batch to publish; a result beyond the wire's bounds (a plugin printing
        thousands of perfdata items) becomes an UNKNOWN saying so, not a lost batch."""
        wired = []
        for r in results:
            try:
                wired.append(WireResult.from_result(r))
            except ValidationError as exc:
                log.warning("job %s: result of %s exceeds the wire's bounds: %s", item.job,
                            r.check, exc.errors()[0].get("msg", "invalid"))
                wired.append(WireResult.from_result(CheckResult(
                    r.host, r.check, State.UNKNOWN,
                    f"the result could not be sent (too large or not finite): "
                    f"{r.output[:500]}", time.time())))
        return ResultBatch(sender=self.sender, zone=self.zone, partition=item.partition,
                           job=item.job, results=wired)

    async def _execute(self, item: WorkItem) -> list[CheckResult]:
        spec = spec_of(item, self.catalog)
        self.stats.runs += 1
        try:
            return await self.runner.run(spec)
        except PoolwardenError as exc:
            # A job this process cannot run (its config lacks the host's BMC or the check)
            # is a visible UNKNOWN for the owner, not a silent gap.
            self.stats.failed += 1
            log.warning("job %s cannot run on %s: %s", item.job, self.sender, exc)
            check = AGENT_CHECK if spec.kind == "snmp" else spec.check_prefix
            return [CheckResult(item.host, check,
                                State.UNKNOWN, f"{self.sender} cannot run {item.job}: {exc}",
                                time.time())]

    def status_line(self, buffered: int) -> str:
        """Runs, drops and how late work started (issue → start) lately, for the log."""
        s = self.stats
        late = [v for _, v in s.lateness]
        mean = sum(late) / len(late) if late else 0.0
        return (f"{s.runs} runs, {s.stale} stale, {s.failed} failed, {s.inflight} in flight, "
                f"{buffered} batches buffered; lateness max {max(late, default=0.0):.2f}s "
                f"mean {mean:.3f}s (last {LATENESS_WINDOW:.0f} s, {len(late)} items)")

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
