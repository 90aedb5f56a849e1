"""The receiving side of :mod:`poolwarden.bus.nats`: the pull-consumer loop, what it hands
to handlers, and the heartbeat subscription.

Not a public module: import these names from ``poolwarden.bus.nats``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig

from poolwarden.distributed.wire import Heartbeat, Rejected, WireMessage, decode
from poolwarden.errors import ConnectionFailed

if TYPE_CHECKING:
    from poolwarden.bus.nats import NatsTransport

log = logging.getLogger("poolwarden.bus.nats")

#: what the nats-py calls raise when the server is away or slow
NATS_ERRORS: Final = (nats.errors.Error, asyncio.TimeoutError, OSError)
#: how long one pull waits for messages: also how long ``stop()`` may take
FETCH_WAIT: Final = 1.0
#: idle seconds between checks that the consumer still exists (a pull on a deleted
#: consumer only times out, it does not fail)
CHECK_EVERY: Final = 5.0


def safe_url(url: str) -> str:
    """``nats://host:4222`` without any user, password or token: safe to log."""
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        if parts.hostname:
            port = f":{parts.port}" if parts.port else ""
            return f"{parts.scheme or 'nats'}://{parts.hostname}{port}"
    return "<nats url>"


class LogLimiter:
    """At most ``burst`` lines per ``window`` seconds: a hostile publisher must not be able
    to flood the log with rejections (the counter still counts every one)."""

    def __init__(self, logger: logging.Logger, *, burst: int = 10, window: float = 60.0) -> None:
        self._log, self._burst, self._window = logger, burst, window
        self._start, self._lines, self._suppressed = -math.inf, 0, 0

    def warning(self, fmt: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._start > self._window:
            if self._suppressed:
                self._log.warning("nats: %d more rejections not logged", self._suppressed)
            self._start, self._lines, self._suppressed = now, 0, 0
        if self._lines < self._burst:
            self._lines += 1
            self._log.warning(fmt, *args)
        else:
            self._suppressed += 1


class Delivery:
    """One decoded message from a pull consumer; the handler settles it exactly once."""

    __slots__ = ("_msg", "delivered", "message", "subject")

    def __init__(self, msg: Msg, message: WireMessage) -> None:
        self._msg, self.message, self.subject = msg, message, msg.subject
        try:
            self.delivered: int = msg.metadata.num_delivered
        except (nats.errors.Error, ValueError, IndexError):
            self.delivered = 1

    @property
    def settled(self) -> bool:
        return self._msg.is_acked

    async def _do(self, op: Awaitable[Any]) -> None:
        try:
            await op
        except nats.errors.MsgAlreadyAckdError:
            pass  # settling twice is harmless; the first answer stands
        except NATS_ERRORS as exc:
            raise ConnectionFailed(f"cannot settle a message: {type(exc).__name__}") from None

    async def ack(self) -> None:
        await self._do(self._msg.ack())

    async def nak(self, delay: float | None = None) -> None:
        await self._do(self._msg.nak(delay))

    async def term(self) -> None:
        await self._do(self._msg.term())

    async def in_progress(self) -> None:
        """Reset the ack timer of a message still being worked on."""
        await self._do(self._msg.in_progress())


DeliveriesHandler = Callable[[list[Delivery]], Awaitable[None]]


class Consumer:
    """A durable pull consumer's loop: fetch, decode, hand over; survives outages."""

    def __init__(self, transport: NatsTransport, stream: str, config: ConsumerConfig,
                 handler: DeliveriesHandler, *, kind: str, batch: int,
                 retry_delay: float) -> None:
        assert config.durable_name
        assert config.filter_subject
        self._t, self.stream, self.config, self._handler = transport, stream, config, handler
        self.durable, self.subject = config.durable_name, config.filter_subject
        self._expect, self._batch, self._retry_delay = {kind}, batch, retry_delay
        self._stopping = False
        self._bound = asyncio.Event()
        self.handler_errors = 0
        self._task = asyncio.create_task(self._run(), name=f"nats:{self.durable}")

    @property
    def running(self) -> bool:
        return not self._task.done()

    async def ready(self, timeout: float = 10.0) -> bool:
        """Wait until the consumer exists on the server and the loop pulls from it."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._bound.wait(), timeout)
        return self._bound.is_set()

    async def stop(self) -> None:
        """Stop pulling (within ``FETCH_WAIT``); what was fetched but not handed over is
        nak'ed so that the consumer's next puller gets it at once. Settling deliveries
        already handed over stays possible."""
        self._stopping = True
        await self._task

    async def _run(self) -> None:
        sub: JetStreamContext.PullSubscription | None = None
        backoff, failing, checked = 0.1, False, time.monotonic()
        while not self._stopping:
            try:
                if not self._t.connected:
                    await self._t.wait_connected(FETCH_WAIT)
                    continue
                if sub is None:
                    await self._t._ensure_consumer(self.stream, self.config)
                    sub = await self._t._jetstream().pull_subscribe_bind(
                        self.durable, stream=self.stream)
                    self._bound.set()
                    checked = time.monotonic()
                try:
                    msgs = await sub.fetch(self._batch, timeout=FETCH_WAIT)
                except TimeoutError:  # nothing to do: a good moment to look around
                    if time.monotonic() - checked > CHECK_EVERY:
                        checked = time.monotonic()
                        await self._t._consumer_info(self.stream, self.durable)
                    continue
            except (*NATS_ERRORS, ConnectionFailed) as exc:
                if isinstance(exc, nats.js.errors.NotFoundError):
                    await self._unbind(sub)
                    sub = None  # the consumer (or its stream) vanished: create it again
                if not failing:
                    log.warning("nats: consumer %s: %s; retrying", self.durable,
                                type(exc).__name__)
                failing = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            except Exception:  # never let the partition's or the zone's loop die
                log.exception("nats: consumer %s failed unexpectedly; retrying", self.durable)
                await self._unbind(sub)
                sub = None
                await asyncio.sleep(2.0)
                continue
            if failing:
                log.info("nats: consumer %s pulls again", self.durable)
            backoff, failing = 0.1, False
            if self._stopping:
                await self._release(msgs)
                break
            await self._dispatch(msgs)
        if sub is not None and self._t.connected:
            await self._release_late(sub)
        await self._unbind(sub)

    async def _release_late(self, sub: JetStreamContext.PullSubscription) -> None:
        """The server may answer a pull just as it expires; unclaimed, such a message would
        wait a whole ``ack_wait`` before the next owner gets it. Hand those back now.

        Only what already reached our inbox is taken: a new pull could fetch back the very
        message just released. nats-py's PullSubscription offers no public way to do that,
        hence its inner subscription."""
        inner = getattr(sub, "_sub", None)
        if inner is None:
            return
        for _ in range(self._batch + 10):
            try:
                msg = await inner.next_msg(timeout=0.05)
            except (*NATS_ERRORS, ValueError):
                return
            if not (msg.headers and msg.headers.get("Status")):  # not a pull's status reply
                await self._release([msg])

    async def _unbind(self, sub: JetStreamContext.PullSubscription | None) -> None:
        if sub is not None:
            with contextlib.suppress(*NATS_ERRORS, ValueError):
                await sub.unsubscribe()

    async def _release(self, msgs: list[Msg]) -> None:
        for msg in msgs:
            with contextlib.suppress(*NATS_ERRORS):
                await msg.nak()

    async def _dispatch(self, msgs: list[Msg]) -> None:
        deliveries: list[Delivery] = []
        for msg in msgs:
            try:
                message = decode(msg.data, expect=self._expect)
                self._t.check_subject(msg.subject, message)
            except Rejected as exc:
                self._t._reject(exc, msg.subject)
                with contextlib.suppress(*NATS_ERRORS):
                    await msg.term()
                continue
            deliveries.append(Delivery(msg, message))
        if not deliveries:
            return
        try:
            await self._handler(deliveries)
        except Exception:  # one bad batch must not stop the partition or the zone
            self.handler_errors += 1
            log.exception("nats: handler of %s failed; %d messages will be redelivered",
                          self.durable, len(deliveries))
            for d in deliveries:
                if not d.settled:
                    with contextlib.suppress(ConnectionFailed):
                        await d.nak(self._retry_delay)


HeartbeatHandler = Callable[[Heartbeat], Awaitable[None]]


class HeartbeatSubscription:
    """A wildcard subscription on every heartbeat subject; ``await stop()`` ends it."""

    def __init__(self, transport: NatsTransport, handler: HeartbeatHandler) -> None:
        self._t, self._handler = transport, handler
        self._sub: Subscription | None = None
        self._task = asyncio.create_task(self._start(), name="nats:heartbeats")

    async def _start(self) -> None:
        self._sub = await self._t._client().subscribe(
            f"{self._t.prefix}.heartbeat.>", cb=self._on_msg)

    async def _on_msg(self, msg: Msg) -> None:
        try:
            hb = decode(msg.data, expect={"heartbeat"})
            self._t.check_subject(msg.subject, hb)
        except Rejected as exc:
            self._t._reject(exc, msg.subject)
            return
        assert isinstance(hb, Heartbeat)
        try:
            await self._handler(hb)
        except Exception:  # a handler bug must not silence the zones' heartbeats
            log.exception("nats: heartbeat handler failed")

    async def ready(self) -> None:
        """Wait until the server knows the subscription."""
        await self._task
        await self._t._client().flush()

    async def stop(self) -> None:
        with contextlib.suppress(*NATS_ERRORS, ConnectionFailed):
            await self._task
            if self._sub is not None:
                await self._sub.unsubscribe()
