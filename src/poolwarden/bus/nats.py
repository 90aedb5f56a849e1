"""The NATS JetStream transport of the distributed mode (docs/distributed.md, "Transport").

Work and results travel through two work-queue streams, heartbeats over core NATS. What
this layer promises its callers:

- a dead bus never blocks nor crashes a caller: work published while it is down is dropped
  and counted (the scheduler issues it again), results wait in a bounded buffer and are
  replayed in order, consumer loops back off and resume by themselves;
- nothing undecodable reaches a handler: it is counted, logged and terminated;
- messages are acknowledged by the caller, when *its* work is durable, never by the loop.

nats-py errors are translated here: ``ConnectionFailed`` when the server cannot be reached,
``ConfigError`` when JetStream refuses our stream configuration; those of the first connect
(TLS and credentials: :class:`NatsSecurity`) in :mod:`poolwarden.bus._nats_connect`.
Secrets are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import Sequence
from typing import Any, Final, cast

import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    ConsumerInfo,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from poolwarden.bus._nats_connect import Connector, NatsSecurity, tls_in_use
from poolwarden.bus._nats_receive import (
    NATS_ERRORS,
    Consumer,
    DeliveriesHandler,
    Delivery,
    HeartbeatHandler,
    HeartbeatSubscription,
    LogLimiter,
    safe_url,
)
from poolwarden.bus._nats_replay import Pending, ReplayBuffer
from poolwarden.distributed.wire import (
    MAX_MESSAGE_BYTES,
    Heartbeat,
    RejectCounter,
    Rejected,
    ResultBatch,
    WireMessage,
    WorkItem,
    encode,
)
from poolwarden.errors import ConfigError, ConnectionFailed

__all__ = ["Consumer", "Delivery", "HeartbeatSubscription", "NatsSecurity", "NatsTransport"]

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT: Final = 2.0
MSG_ID: Final = "Nats-Msg-Id"
#: JetStream's "message size exceeds maximum allowed": retrying cannot help
_TOO_BIG: Final = 10054
_STREAM_CONFLICT: Final = 10058
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.*>:\-]")


class NatsTransport:
    """Work, results and heartbeats on one NATS connection (see the module docstring)."""

    def __init__(self, url: str | Sequence[str], *, name: str, buffer_seconds: float = 300.0,
                 buffer_max: int = 10_000, rejects: RejectCounter | None = None,
                 prefix: str = "pw", security: NatsSecurity | None = None) -> None:
        """``url``: one server, several separated by commas, or a list of them."""
        self.url, self.name, self.prefix = url, name, prefix
        self._connector = Connector(url, security)
        self.servers, self.security = self._connector.servers, self._connector.security
        self.where = self._connector.where  #: the servers, without credentials: safe to log
        self.buffer_seconds, self.buffer_max = buffer_seconds, buffer_max
        self.rejects = rejects if rejects is not None else RejectCounter()
        self.work_stream = f"{prefix.upper()}_WORK"
        self.results_stream = f"{prefix.upper()}_RESULTS"
        self.dropped_work = 0
        self._too_big = 0
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._up = asyncio.Event()
        self._max_payload = 1024 * 1024
        # a restarted process must not reuse the ids of its predecessor within the
        # duplicate window, or JetStream would silently drop its first batches
        self._boot = secrets.token_hex(4)
        self._seq = 0
        self._replay = ReplayBuffer(
            self._publish_pending, is_up=lambda: self.connected, wait_up=self.wait_connected,
            permanent=lambda exc: getattr(exc, "err_code", None) == _TOO_BIG,
            retry=NATS_ERRORS, max_items=buffer_max, max_age=buffer_seconds)
        self._consumers: list[Consumer] = []
        self._heartbeat_subs: list[HeartbeatSubscription] = []
        self._stream_args: dict[str, float] | None = None
        self._outage_logged = False
        self._closing = False
        self._reject_log = LogLimiter(log)

    def __repr__(self) -> str:
        return f"NatsTransport({self.where}, name={self.name!r}, prefix={self.prefix!r})"

    # -- connection ------------------------------------------------------------------
    async def connect(self) -> None:
        """Connect once, then reconnect forever: a bus outage is something to ride out, not
        to die of. The first connect raises ``ConnectionFailed`` if the server is not
        there, TLS fails or TLS is required but not offered; ``AuthenticationFailed`` if it
        refuses the credentials (both name the servers, never a secret); ``ConfigError``
        if a TLS or credentials file cannot be used."""
        if self._nc is not None:
            return
        nc = Client()
        await self._connector.connect(
            nc, name=self.name, error_cb=self._on_error, disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected, closed_cb=self._on_closed)
        self._nc, self._js = nc, nc.jetstream(timeout=PUBLISH_TIMEOUT)
        self._max_payload = min(nc.max_payload, MAX_MESSAGE_BYTES)
        self._up.set()
        self._replay.start()
        server = safe_url(nc.connected_url.geturl()) if nc.connected_url else self.where
        log.info("nats: connected to %s as %s%s", server, self.name,
                 " (TLS)" if tls_in_use(nc) else "")

    @property
    def connected(self) -> bool:  # and not refused after a reconnect (_on_reconnected)
        return self._nc is not None and self._nc.is_connected and self._up.is_set()

    def _client(self) -> Client:
        if self._nc is None:
            raise ConnectionFailed("NatsTransport.connect() was not called")
        return self._nc

    def _jetstream(self) -> JetStreamContext:
        if self._js is None:
            raise ConnectionFailed("NatsTransport.connect() was not called")
        return self._js

    async def _on_error(self, exc: Exception) -> None:
        if self._nc is None:
            self._connector.failed(exc)  # the first connect: explained, or ended if hopeless
        # while reconnecting, nats-py reports every failed attempt: one line per outage
        level = logging.DEBUG if self._outage_logged else logging.WARNING
        self._outage_logged = not self.connected
        text = str(exc)
        log.log(level, "nats: %s: %s", type(exc).__name__,
                "(not shown: contains a URL)" if "://" in text else text[:200])

    async def _on_disconnected(self) -> None:
        if self._up.is_set() and not self._closing:
            log.warning("nats: disconnected from %s", self.where)
        self._up.clear()

    async def _on_reconnected(self) -> None:
        if self._nc is not None and self._connector.refuse_plain_reconnect(self._nc):
            return
        self._outage_logged = False
        self._up.set()
        self._replay.wake()
        log.warning("nats: reconnected to %s (%d result batches to replay)",
                    self.where, len(self._replay))

    async def _on_closed(self) -> None:
        self._up.clear()
        log.log(logging.DEBUG if self._closing else logging.WARNING, "nats: connection closed")

    async def wait_connected(self, timeout: float) -> bool:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._up.wait(), timeout)
        return self.connected

    # -- streams ---------------------------------------------------------------------
    def work_subject(self, zone: str) -> str:
        return f"{self.prefix}.work.{zone}"

    def results_subject(self, partition: int) -> str:
        return f"{self.prefix}.results.{partition}"

    def heartbeat_subject(self, hb: Heartbeat) -> str:
        return f"{self.prefix}.heartbeat.{hb.zone}.{hb.sender}"

    async def ensure_streams(self, *, work_max_age: float = 600,
                             results_max_age: float = 3600) -> None:
        """Create or update both streams; safe to run from every process at once."""
        self._stream_args = {"work_max_age": work_max_age, "results_max_age": results_max_age}
        common: dict[str, Any] = {
            "retention": RetentionPolicy.WORK_QUEUE, "storage": StorageType.FILE,
            "num_replicas": 1, "max_msg_size": self._max_payload}
        configs = [
            # stale work is worthless: the oldest goes first when the stream is full
            StreamConfig(name=self.work_stream, subjects=[f"{self.prefix}.work.*"],
                         max_age=work_max_age, max_bytes=256 * 1024 * 1024,
                         discard=DiscardPolicy.OLD, duplicate_window=min(60, work_max_age),
                         **common),
            # results are not: a full stream refuses, so the publishers keep and count them;
            # the duplicate window covers a replay after the satellite's buffer time
            StreamConfig(name=self.results_stream, subjects=[f"{self.prefix}.results.*"],
                         max_age=results_max_age, max_bytes=1024 * 1024 * 1024,
                         discard=DiscardPolicy.NEW, duplicate_window=min(600, results_max_age),
                         **common),
        ]
        js = self._jetstream()
        for cfg in configs:
            try:
                try:
                    await js.add_stream(cfg)
                except nats.js.errors.BadRequestError as exc:
                    if exc.err_code != _STREAM_CONFLICT:
                        raise
                    await js.update_stream(cfg)
            except nats.js.errors.APIError as exc:
                if isinstance(exc, nats.js.errors.ServiceUnavailableError):
                    raise ConnectionFailed(f"JetStream unavailable for {cfg.name}") from None
                raise ConfigError(f"NATS stream {cfg.name}: {exc.description}") from None
            except NATS_ERRORS as exc:
                raise ConnectionFailed(f"cannot set up stream {cfg.name}: "
                                       f"{type(exc).__name__}") from None

    def _stream_of(self, subject: str) -> tuple[str, str]:
        """(stream, kind) of a consumer's filter subject."""
        if subject.startswith(f"{self.prefix}.work."):
            return self.work_stream, "work"
        if subject.startswith(f"{self.prefix}.results."):
            return self.results_stream, "results"
        raise ValueError(f"not a work or results subject: {subject}")

    async def _ensure_consumer(self, stream: str, cfg: ConsumerConfig) -> None:
        """Create the consumer, or update it to ``cfg``; recreate the streams first if the
        server lost them (a NATS restarted on an empty store)."""
        js = self._jetstream()
        try:
            await js.add_consumer(stream, cfg)
        except nats.js.errors.NotFoundError:
            if self._stream_args is None:
                raise
            log.warning("nats: stream %s is gone; creating it again", stream)
            await self.ensure_streams(**self._stream_args)
            await js.add_consumer(stream, cfg)

    async def _consumer_info(self, stream: str, durable: str) -> ConsumerInfo:
        # nats-py leaves consumer_info unannotated
        return cast(ConsumerInfo, await self._jetstream().consumer_info(stream, durable))

    # -- publishing ------------------------------------------------------------------
    async def publish_work(self, item: WorkItem) -> bool:
        """Store one work item; False (and counted) when the bus cannot take it now."""
        if self.connected:
            try:
                await self._jetstream().publish(self.work_subject(item.zone), encode(item),
                                                timeout=PUBLISH_TIMEOUT, stream=self.work_stream)
                return True
            except NATS_ERRORS as exc:
                log.debug("nats: work %s not published: %s", item.job, type(exc).__name__)
        self.dropped_work += 1
        return False

    async def publish_results(self, batch: ResultBatch) -> bool:
        """Publish ``batch`` after every batch still buffered; True once JetStream has it.

        False means buffered (the bus is down or slow: the replay publishes it when it can)
        or dropped (counted): either way the caller goes on."""
        entries = [self._pending(batch.sender, self.results_subject(batch.partition), data)
                   for data in self._split(batch)]
        if not entries:
            return False
        self._replay.add(entries)
        if not self.connected:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(entries[-1].done), PUBLISH_TIMEOUT + 1)
            return all(e.done.done() and e.done.result() for e in entries)
        return False

    def buffered(self) -> int:
        """Result batches not yet acknowledged by JetStream."""
        return len(self._replay)

    @property
    def dropped_results(self) -> int:
        return self._too_big + self._replay.dropped

    def _pending(self, sender: str, subject: str, data: bytes) -> Pending:
        self._seq += 1
        return Pending(subject, data, f"{sender}.{self._boot}.{self._seq}")

    async def _publish_pending(self, entry: Pending) -> None:
        await self._jetstream().publish(entry.subject, entry.data, timeout=PUBLISH_TIMEOUT,
                                        stream=self.results_stream,
                                        headers={MSG_ID: entry.msg_id})

    def _split(self, batch: ResultBatch) -> list[bytes]:
        """Encoded batch(es) each within the server's max payload, results kept in order."""
        data = encode(batch)
        if len(data) <= self._max_payload - 1024:  # headroom for the headers
            return [data]
        if len(batch.results) <= 1:
            self._too_big += 1
            log.error("nats: a result of %s is larger than NATS accepts (%d bytes); dropped",
                      batch.job, len(data))
            return []
        half = len(batch.results) // 2
        return [*self._split(batch.model_copy(update={"results": batch.results[:half]})),
                *self._split(batch.model_copy(update={"results": batch.results[half:]}))]

    async def publish_heartbeat(self, hb: Heartbeat) -> bool:
        """Core NATS, fire and forget: a heartbeat that cannot be sent now is worthless later."""
        if not self.connected:
            return False
        try:
            await self._client().publish(self.heartbeat_subject(hb), encode(hb))
        except NATS_ERRORS:
            return False
        return True

    # -- consuming -------------------------------------------------------------------
    def consume(self, durable: str, subject: str, handler: DeliveriesHandler, *,
                batch: int = 100, ack_wait: float = 30.0, max_deliver: int = -1,
                retry_delay: float = 1.0) -> Consumer:
        """Pull ``subject`` through the durable consumer ``durable`` (created or updated)
        and hand the decoded messages to ``handler`` in batches; the handler acks.

        ``retry_delay``: how long a batch whose handler raised waits before redelivery."""
        stream, kind = self._stream_of(subject)
        self._consumers = [c for c in self._consumers if c.running]
        cfg = ConsumerConfig(
            name=durable, durable_name=durable, filter_subject=subject,
            ack_policy=AckPolicy.EXPLICIT, ack_wait=ack_wait, max_deliver=max_deliver,
            max_ack_pending=20_000)
        consumer = Consumer(self, stream, cfg, handler, kind=kind, batch=batch,
                            retry_delay=retry_delay)
        self._consumers.append(consumer)
        return consumer

    def subscribe_heartbeats(self, handler: HeartbeatHandler) -> HeartbeatSubscription:
        """Every satellite's heartbeat, decoded and validated (rejects are counted)."""
        sub = HeartbeatSubscription(self, handler)
        self._heartbeat_subs.append(sub)
        return sub

    def check_subject(self, subject: str, message: WireMessage) -> None:
        """A message must travel on its own subject (a work item for zone a on zone b's
        subject would be executed by the wrong satellites)."""
        if isinstance(message, WorkItem):
            expected = self.work_subject(message.zone)
        elif isinstance(message, ResultBatch):
            expected = self.results_subject(message.partition)
        else:
            expected = self.heartbeat_subject(message)
        if subject != expected:
            raise Rejected("subject mismatch", reason_class="subject", kind=message.kind)

    def _reject(self, exc: Rejected, subject: str) -> None:
        self.rejects.record(exc)
        where = _UNSAFE.sub("?", subject[:200])  # a heartbeat's subject is the sender's choice
        self._reject_log.warning("nats: rejected a message on %s: %s", where, exc.reason)

    async def depth(self, durable: str) -> int:
        """Messages waiting for or held by ``durable`` (pending + unacknowledged); -1 if
        unknown (the bus is down, the consumer does not exist yet)."""
        streams = [c.stream for c in self._consumers if c.durable == durable] or [
            self.work_stream, self.results_stream]
        for stream in streams:
            try:
                info = await self._consumer_info(stream, durable)
            except (*NATS_ERRORS, ConnectionFailed):
                continue
            return (info.num_pending or 0) + (info.num_ack_pending or 0)
        return -1

    async def close(self, *, flush_timeout: float = 2.0) -> None:
        """Stop the consumers, give buffered results ``flush_timeout`` to get out, drain."""
        self._closing = True
        for consumer in self._consumers:
            await consumer.stop()
        for sub in self._heartbeat_subs:
            await sub.stop()
        deadline = time.monotonic() + flush_timeout
        while len(self._replay) and self.connected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self._replay.stop()
        if len(self._replay):
            log.warning("nats: closing with %d result batches unsent", len(self._replay))
        if self._nc is not None:
            nc, self._nc, self._js = self._nc, None, None
            try:
                await nc.drain()
            except NATS_ERRORS:
                with contextlib.suppress(*NATS_ERRORS):
                    await nc.close()
