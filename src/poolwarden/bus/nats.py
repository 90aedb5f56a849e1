"""The NATS JetStream transport of the distributed mode (docs/distributed.md, "Transport").

Work and results travel through two work-queue streams, heartbeats over core NATS. What
this layer promises its callers:

- a dead bus never blocks nor crashes a caller: work published while it is down is dropped
  and counted (the scheduler issues it again), results wait in a bounded buffer and are
  replayed in order, consumer loops back off and resume by themselves;
- nothing undecodable reaches a handler: it is counted, logged and terminated;
- messages are acknowledged by the caller, when *its* work is durable, never by the loop.

nats-py errors are translated here: ``ConnectionFailed`` when the server cannot be reached
(or its certificate is not trusted), ``AuthenticationFailed`` when it refuses our
credentials, ``ConfigError`` when JetStream refuses our stream configuration or a TLS file
cannot be loaded. TLS and credentials: :class:`NatsSecurity`; secrets are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import re
import secrets
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast
from urllib.parse import urlsplit

import nats
import nats.errors
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
from poolwarden.errors import (
    AuthenticationFailed,
    ConfigError,
    ConnectionFailed,
    PoolwardenError,
)

__all__ = ["Consumer", "Delivery", "HeartbeatSubscription", "NatsSecurity", "NatsTransport"]

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT: Final = 2.0
MSG_ID: Final = "Nats-Msg-Id"
#: JetStream's "message size exceeds maximum allowed": retrying cannot help
_TOO_BIG: Final = 10054
_STREAM_CONFLICT: Final = 10058
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.*>:\-]")
#: what nats-server says when it refuses a client's credentials
_REFUSED: Final = ("authorization violation", "authentication expired",
                   "authentication revoked")


@dataclass(frozen=True)
class NatsSecurity:
    """TLS and credentials of a NATS connection (config: ``bus.*``); the secrets are
    left out of the repr. ``tls_ca`` or a client certificate make TLS mandatory, as does a
    ``tls://`` URL: a server that does not offer it is refused before any credential is
    sent (nats-py itself would carry on in clear)."""

    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_hostname: str | None = None
    creds_file: Path | None = None
    token: str | None = field(default=None, repr=False)
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The context verifying the server (and presenting our certificate); None: nats-py's
        default (the system's CAs) if the server asks for TLS. ``ConfigError`` if a file
        cannot be loaded."""
        if self.tls_ca is None and self.tls_cert is None:
            return None
        try:
            ctx = ssl.create_default_context(
                cafile=str(self.tls_ca) if self.tls_ca is not None else None)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise _file_error(exc, self.tls_ca, "bus.tls_ca") from None
        if self.tls_cert is not None:
            try:
                ctx.load_cert_chain(self.tls_cert, self.tls_key, password=_no_passphrase)
            except (OSError, ValueError) as exc:
                raise _file_error(exc, self.tls_cert, "bus.tls_cert / bus.tls_key") from None
        return ctx


def _no_passphrase() -> str:
    # without a callback OpenSSL would prompt on the terminal for an encrypted key
    raise ValueError("encrypted private keys are not supported")


def _file_error(exc: Exception, path: Path | None, what: str) -> ConfigError:
    reason = (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc))[:200]
    return ConfigError(f"cannot load: {reason}", file=str(path) if path else None, field=what)


def _servers(url: str | Sequence[str]) -> list[str]:
    """One URL, several separated by commas, or a list of them."""
    urls = url.split(",") if isinstance(url, str) else list(url)
    return [u.strip() for u in urls if u.strip()]


class _NoTls(nats.errors.Error):
    """Raised inside nats-py's CONNECT when TLS is required but not in use."""

    def __str__(self) -> str:
        return "the server does not offer TLS, which is required: credentials not sent"


def _refused(exc: Exception) -> bool:
    """The server refused our credentials."""
    return isinstance(exc, nats.errors.AuthorizationError) or (
        isinstance(exc, nats.errors.Error) and any(w in str(exc).lower() for w in _REFUSED))


def _hopeless(exc: Exception) -> bool:
    """A connect error that trying again at once cannot cure."""
    return _refused(exc) or isinstance(exc, _NoTls | ssl.SSLError)


def _abandon(nc: Client) -> None:
    """Close the socket of a connect we cancelled (its ``close()`` could hang, see
    ``_on_error``)."""
    transport: Any = nc._transport  # nats-py leaves Transport.close unannotated
    if transport is not None:
        with contextlib.suppress(OSError, RuntimeError):
            transport.close()


def _tls_in_use(nc: Client) -> bool:
    # nats-py upgrades a (non-websocket) connection to TLS exactly when the server's INFO
    # says tls_required; it has no public accessor for it
    return bool(nc._server_info.get("tls_required"))


class NatsTransport:
    """Work, results and heartbeats on one NATS connection (see the module docstring)."""

    def __init__(self, url: str | Sequence[str], *, name: str, buffer_seconds: float = 300.0,
                 buffer_max: int = 10_000, rejects: RejectCounter | None = None,
                 prefix: str = "pw", security: NatsSecurity | None = None) -> None:
        """``url``: one server, several separated by commas, or a list of them."""
        self.url, self.name, self.prefix = url, name, prefix
        self.servers = _servers(url)
        self.security = security if security is not None else NatsSecurity()
        #: the servers, without credentials: safe to log
        self.where = ", ".join(safe_url(u) for u in self.servers) or "<no nats url>"
        self._last_error: Exception | None = None
        self._connecting: asyncio.Task[None] | None = None
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
        options = self._security_options(nc)
        self._last_error = None
        # a task, so that _on_error can end it at the first error that retrying cannot fix
        self._connecting = asyncio.create_task(nc.connect(
            self.servers, name=self.name, connect_timeout=2,
            reconnect_time_wait=0.5,  # type: ignore[arg-type]  # annotated int, takes float
            max_reconnect_attempts=1, error_cb=self._on_error,
            disconnected_cb=self._on_disconnected, reconnected_cb=self._on_reconnected,
            closed_cb=self._on_closed, **options))
        try:
            await self._connecting
        except asyncio.CancelledError:
            current = asyncio.current_task()
            _abandon(nc)
            if self._last_error is None or (current is not None and current.cancelling()):
                raise  # our caller's cancellation, not _on_error's
            raise self._connect_error(self._last_error) from None
        except (*NATS_ERRORS, ValueError) as exc:
            raise self._connect_error(exc) from None
        finally:
            self._connecting = None
        if self._tls_required() and not _tls_in_use(nc):
            with contextlib.suppress(*NATS_ERRORS):
                await nc.close()
            raise ConnectionFailed(f"NATS at {self.where}: {_NoTls()}")
        # nats-py retries the *first* connect forever with -1; from now on, that is the goal
        nc.options["max_reconnect_attempts"] = -1
        self._nc, self._js = nc, nc.jetstream(timeout=PUBLISH_TIMEOUT)
        self._max_payload = min(nc.max_payload, MAX_MESSAGE_BYTES)
        self._up.set()
        self._replay.start()
        server = safe_url(nc.connected_url.geturl()) if nc.connected_url else self.where
        log.info("nats: connected to %s as %s%s", server, self.name,
                 " (TLS)" if _tls_in_use(nc) else "")

    def _tls_required(self) -> bool:
        s = self.security
        return (s.tls_ca is not None or s.tls_cert is not None
                or any(urlsplit(u).scheme == "tls" for u in self.servers))

    def _security_options(self, nc: Client) -> dict[str, Any]:
        """nats-py's connect arguments for TLS and credentials; the token and password go
        as callbacks that refuse to hand them over a connection without the TLS asked for
        (they are called while nats-py writes CONNECT, at every reconnect too)."""
        s = self.security

        def guarded(secret: str) -> Callable[[], str]:
            def give() -> str:
                if self._tls_required() and not _tls_in_use(nc):
                    raise _NoTls
                return secret
            return give

        options: dict[str, Any] = {"tls": s.ssl_context(), "tls_hostname": s.tls_hostname}
        if s.creds_file is not None:
            if importlib.util.find_spec("nkeys") is None:
                raise ConfigError("a NATS credentials file needs the nkeys package "
                                  "(pip install 'nats-py[nkeys]')", field="bus.creds_file")
            if not s.creds_file.is_file():
                raise ConfigError("no such file", file=str(s.creds_file),
                                  field="bus.creds_file")
            options["user_credentials"] = str(s.creds_file)
        if s.token is not None:
            options["token"] = guarded(s.token)
        if s.user is not None:
            options["user"] = s.user
            options["password"] = guarded(s.password or "")
        return options

    def _connect_error(self, exc: Exception) -> PoolwardenError:
        """Our error for a failed first connect. nats-py ends it with NoServersError once
        every server was tried; what went wrong was reported to ``_on_error`` before."""
        cause = exc
        if isinstance(exc, nats.errors.NoServersError) and self._last_error is not None:
            cause = self._last_error
        where = f"NATS at {self.where}"
        if _refused(cause):
            return AuthenticationFailed(f"{where} refused the credentials (authorization "
                                        "violation): check bus.token / user / creds_file")
        if isinstance(cause, _NoTls):
            return ConnectionFailed(f"{where}: {cause}")
        if isinstance(cause, ssl.SSLCertVerificationError):
            return ConnectionFailed(f"{where}: its TLS certificate is not trusted "
                                    f"({cause.verify_message}): check bus.tls_ca / tls_hostname")
        if isinstance(cause, ssl.SSLError):
            return ConnectionFailed(f"{where}: TLS handshake failed "
                                    f"({cause.reason or type(cause).__name__})")
        return ConnectionFailed(f"{where} is unreachable: {type(cause).__name__}")

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

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
            self._last_error = exc  # the first connect: _connect_error explains it
            if self._connecting is not None and _hopeless(exc):
                # nats-py would try again in vain, or hang for good closing the socket of a
                # failed TLS handshake (nats-py 2.16 waits for a close that never comes)
                self._connecting.cancel()
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
