"""The processes of the distributed mode: ``poolwarden master`` and ``poolwarden satellite``.

Each is a handful of loops around the parts in this package: the cluster tick (leases →
partitions gained, handed over, lost), the state flush (save, then acknowledge), the zone
watch, heartbeats, and — on a master — the embedded service's scheduler and API. Every
loop survives a blinking database or bus: it logs, waits and goes on; only the shutdown
signal ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import SQLAlchemyError

from poolwarden.bus.nats import NatsSecurity, NatsTransport
from poolwarden.collect.jobs import MASTER_ZONE
from poolwarden.config.models import BusConfig, Config
from poolwarden.distributed.cluster import Cluster
from poolwarden.distributed.master import MasterMonitor
from poolwarden.distributed.wire import Heartbeat, RejectCounter
from poolwarden.distributed.worker import Worker
from poolwarden.errors import PoolwardenError
from poolwarden.remediate.executor import ExecutorSettings
from poolwarden.store.db import Store

log = logging.getLogger("poolwarden.node")
STATUS_EVERY = 15.0


def default_sender(role: str) -> str:
    """``<role>-<host>-<pid>``: a subject token (no dots) that says where to look."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:40]
    return f"{role}-{host}-{os.getpid()}"


async def every(seconds: float, stop: asyncio.Event, what: str,
                fn: Callable[[], Awaitable[None]]) -> None:
    """Call ``fn`` every ``seconds`` until ``stop``; an error is logged, never fatal."""
    while not stop.is_set():
        try:
            await fn()
        except (PoolwardenError, SQLAlchemyError, OSError) as exc:
            log.error("%s failed: %s", what, exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)


def bus_security(bus: BusConfig) -> NatsSecurity:
    """TLS and credentials of ``bus``, the secret files read now (``ConfigError`` if not)."""
    token, password = bus.token_secret, bus.password_secret
    return NatsSecurity(
        tls_ca=bus.tls_ca, tls_cert=bus.tls_cert, tls_key=bus.tls_key,
        tls_hostname=bus.tls_hostname, creds_file=bus.creds_file,
        token=token.reveal() if token is not None else None, user=bus.user,
        password=password.reveal() if password is not None else None)


async def connect(config: Config, name: str, stop: asyncio.Event,
                  rejects: RejectCounter) -> NatsTransport:
    """The transport, connected; a bus that is not up yet (or a secret file not there
    yet, a refused credential) is waited for, with one error line every 2 s."""
    c = config.cluster
    transport: NatsTransport | None = None
    while True:
        try:
            if transport is None:
                transport = NatsTransport(
                    config.bus.url, name=name, prefix=c.prefix,
                    buffer_seconds=c.buffer_seconds, buffer_max=c.buffer_max,
                    rejects=rejects, security=bus_security(config.bus))
            await transport.connect()
            await transport.ensure_streams()
            return transport
        except PoolwardenError as exc:
            log.error("bus %s: %s; retrying", name, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)
            if stop.is_set():
                raise


async def heartbeats(transport: NatsTransport, worker: Worker, zone: str, sender: str,
                     interval: float, stop: asyncio.Event) -> None:
    async def beat() -> None:
        await transport.publish_heartbeat(Heartbeat(
            sender=sender, zone=zone, ts=time.time(), inflight=worker.stats.inflight,
            buffered=transport.buffered()))

    await every(interval, stop, "heartbeat", beat)


async def run_satellite(config: Config, zone: str, stop: asyncio.Event, *,
                        sender: str | None = None) -> Worker:
    """Execute the zone's work until ``stop``; returns the worker (for its figures)."""
    sender = sender or default_sender(f"sat-{zone}")
    rejects = RejectCounter()
    transport = await connect(config, sender, stop, rejects)
    worker = Worker(config, transport, zone=zone, sender=sender)
    await worker.start()
    log.info("satellite %s serves zone %s", sender, zone)

    async def report() -> None:
        log.info("satellite %s: %s", sender, worker.status_line(transport.buffered()))

    status = asyncio.create_task(every(STATUS_EVERY, stop, "status", report))
    try:
        await heartbeats(transport, worker, zone, sender, config.cluster.heartbeat, stop)
    finally:
        await status
        await worker.stop()
        await transport.close()
    return worker


class MasterNode:
    """One master: cluster membership, its partitions' pipeline, the master zone's worker."""

    def __init__(self, config: Config, store: Store, *, member_id: str | None = None,
                 executor: ExecutorSettings | None = None) -> None:
        self.config, self.store, self.executor = config, store, executor
        self.sender = member_id or default_sender("master")
        self.cluster = Cluster(store, config.cluster.partitions,
                               ttl=config.cluster.lease_ttl, member_id=self.sender)
        self.rejects = RejectCounter()
        self.monitor: MasterMonitor | None = None
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        c = self.config.cluster
        transport = await connect(self.config, self.sender, stop, self.rejects)
        mon = self.monitor = MasterMonitor(self.config, self.store, transport, self.cluster,
                                           executor=self.executor, rejects=self.rejects)
        worker = Worker(self.config, transport, zone=MASTER_ZONE, sender=self.sender)
        await worker.start()

        async def heard(hb: Heartbeat) -> None:
            mon.zones.seen(hb.zone, hb.sender, time.time())

        transport.subscribe_heartbeats(heard)
        renew_every = min(1.0, c.lease_ttl / 4)
        loops = [
            every(renew_every, stop, "lease renewal", self._renew),
            every(1.0, stop, "rebalance", self._rebalance),
            every(c.state_flush, stop, "state flush", mon.flush),
            every(c.heartbeat, stop, "zone watch", mon.check_zones),
            heartbeats(transport, worker, MASTER_ZONE, self.sender, c.heartbeat, stop),
        ]
        tasks = [asyncio.create_task(loop) for loop in loops]
        self.ready.set()
        log.info("master %s up (%d partitions shared by the live masters)", self.sender,
                 c.partitions)
        try:
            await mon.run(stop)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            # all at once: each consumer takes up to a second to stop
            await asyncio.gather(*(mon.give(p, lost=False) for p in sorted(mon.owned)))
            await asyncio.to_thread(self.cluster.leave)
            await worker.stop()
            await transport.close()

    async def _renew(self) -> None:
        """On its own timer: slow hand-overs must never delay a renewal (an expired
        membership would make the other masters take everything, then give it back)."""
        await asyncio.to_thread(self.cluster.renew)

    async def _rebalance(self) -> None:
        mon = self.monitor
        assert mon is not None
        a = await asyncio.to_thread(self.cluster.rebalance)
        await asyncio.gather(*(mon.give(p, lost=True) for p in sorted(a.lost)))
        await asyncio.gather(*(mon.give(p, lost=False) for p in sorted(a.release)))
        for p in sorted(a.gained):
            await mon.gain(p)


__all__ = ["MasterNode", "default_sender", "run_satellite"]
