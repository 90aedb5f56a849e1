"""Async SNMP client over gufo-snmp: v2c/v3 targets, multi-OID GET, GETBULK walks.

Why gufo-snmp: its Rust core on asyncio sockets reads ~94,000 values/s on this machine
kind where a shell loop forking ``snmpget`` per value reads ~175 (SNMP.md), so one process
polls a whole site's BMCs. One session per agent, one PDU for many scalars, one GETBULK
stream per table — never a process or a request per metric.

gufo-snmp's exceptions stop here: timeouts and refused ports become
:class:`~poolwarden.errors.ConnectionFailed`, refused v3 credentials
:class:`~poolwarden.errors.AuthenticationFailed`, garbled answers
:class:`~poolwarden.errors.TransientError`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Literal, TypeVar

from gufo.snmp import (
    Aes128Key,
    Aes192Key,
    Aes256Key,
    BaseAuthKey,
    BasePrivKey,
    DesKey,
    Md5Key,
    Sha1Key,
    Sha224Key,
    Sha256Key,
    Sha384Key,
    Sha512Key,
    SnmpAuthError,
    SnmpError,
    User,
)
from gufo.snmp.aio import SnmpSession
from gufo.snmp.user import KeyType
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from poolwarden.collect._v3 import ENGINES, master_key
from poolwarden.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    PoolwardenError,
    TransientError,
    UsageError,
)

#: What an agent's value becomes: INTEGER/Counter/Gauge/TimeTicks → int, OCTET STRING →
#: bytes, OBJECT IDENTIFIER and IpAddress → dotted str.
SnmpValue = int | float | str | bytes | None
T = TypeVar("T")
E = TypeVar("E", bound=PoolwardenError)

SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
#: Varbinds per GET PDU: well under the 1472-byte answers agents send without fragmenting.
GET_CHUNK = 32

AuthProtocol = Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"]
PrivProtocol = Literal["DES", "AES", "AES192", "AES256"]
_AUTH: dict[str, type[BaseAuthKey]] = {
    "MD5": Md5Key, "SHA": Sha1Key, "SHA224": Sha224Key, "SHA256": Sha256Key,
    "SHA384": Sha384Key, "SHA512": Sha512Key,
}
_PRIV: dict[str, type[BasePrivKey]] = {
    "DES": DesKey, "AES": Aes128Key, "AES192": Aes192Key, "AES256": Aes256Key,
}


class SnmpTarget(BaseModel):
    """Where an agent listens and how to talk to it; secrets are ``SecretStr``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str = Field(min_length=1)
    port: int = Field(default=161, ge=1, le=65535)
    version: Literal["v2c", "v3"] = "v2c"
    community: SecretStr | None = None
    user: str | None = None
    auth_protocol: AuthProtocol = "SHA"
    auth_key: SecretStr | None = None
    priv_protocol: PrivProtocol = "AES"
    priv_key: SecretStr | None = None
    #: Seconds to wait for each answer; a request is sent ``1 + retries`` times at most.
    timeout: float = Field(default=2.0, gt=0, le=60)
    retries: int = Field(default=1, ge=0, le=10)
    max_repetitions: int = Field(default=40, ge=1, le=200)

    @model_validator(mode="after")
    def _credentials(self) -> SnmpTarget:
        if self.version == "v2c" and self.community is None:
            raise ValueError("SNMP v2c needs a community")
        if self.version == "v3":
            if not self.user:
                raise ValueError("SNMP v3 needs a user")
            if self.priv_key is not None and self.auth_key is None:
                raise ValueError("a v3 privacy key needs an authentication key")
            for key in (self.auth_key, self.priv_key):
                if key is not None and len(key.get_secret_value()) < 8:
                    raise ValueError("v3 keys (passphrases) must be at least 8 characters")
        return self

    @property
    def endpoint(self) -> str:
        """``address:port`` (IPv6 in brackets), for messages and summaries."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    @property
    def engine_key(self) -> tuple[str, int, str] | None:
        """What the agent's v3 engine id is remembered by; None for v2c."""
        return (self.address, self.port, self.user or "") if self.version == "v3" else None

    def _user(self) -> User:
        """The v3 user with master keys (hashed once per process, see ``_v3``)."""
        assert self.user is not None  # checked by the validator
        auth = priv = None
        alg = _AUTH[self.auth_protocol]
        if self.auth_key is not None:
            auth = alg(master_key(alg, self.auth_key.get_secret_value().encode()),
                       key_type=KeyType.Master)
        if self.priv_key is not None:
            priv = _PRIV[self.priv_protocol](
                master_key(alg, self.priv_key.get_secret_value().encode()),
                key_type=KeyType.Master)
        return User(self.user, auth_key=auth, priv_key=priv)

    def session(self, engine_id: bytes | None = None) -> SnmpSession:
        """A gufo-snmp session (not yet opened) for this target; a known v3 ``engine_id``
        spares the discovery round trip."""
        if self.version == "v3":
            return SnmpSession(self.address, self.port, user=self._user(), timeout=self.timeout,
                               max_repetitions=self.max_repetitions, engine_id=engine_id)
        assert self.community is not None
        return SnmpSession(
            self.address, self.port, community=self.community.get_secret_value(),
            timeout=self.timeout, max_repetitions=self.max_repetitions,
        )


def parse_endpoint(text: str, default_port: int = 161) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or bare ``v6`` → (address, port)."""
    host, port = text.strip(), str(default_port)
    if host.startswith("["):
        inner, _, rest = host[1:].partition("]")
        host, port = inner, rest[1:] if rest.startswith(":") else port
    elif host.count(":") == 1:
        host, port = host.split(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"bad SNMP address {text!r}: expected HOST[:PORT]")
    return host, int(port)


@dataclass
class Fetched:
    """Everything one session read: values by OID, and what it cost."""

    values: dict[str, SnmpValue] = field(default_factory=dict)
    requests: int = 0
    seconds: float = 0.0


class SnmpClient:
    """One session to one agent: ``async with SnmpClient(target) as c: await c.walk(p)``.

    Requests on a session are sequential (one UDP socket, answers matched in order);
    concurrency comes from many clients at once, see :func:`gather_bounded`.
    """

    def __init__(self, target: SnmpTarget) -> None:
        self.target = target
        self.requests = 0
        self._session: SnmpSession | None = None

    async def __aenter__(self) -> SnmpClient:
        key = self.target.engine_key
        known = ENGINES.get(key) if key is not None else None
        if known is not None:
            # one round trip for boots/time, tried once: a silent agent may have been
            # replaced (a new engine id), so it is forgotten and discovered below
            self._session = self._new_session(known)
            try:
                await self._call(self._session.refresh, tries=1)
                return self
            except (ConnectionFailed, AuthenticationFailed):
                assert key is not None
                ENGINES.forget(key)
        self._session = self._new_session(None)
        # why: v3 discovers the engine id, then its boots/time (two round trips);
        # for v2c this is a no-op that sends nothing.
        await self._call(self._session.refresh, sends=2 if key is not None else 0)
        if key is not None:
            ENGINES.remember(key, self._session.get_engine_id())
        return self

    def _new_session(self, engine_id: bytes | None) -> SnmpSession:
        try:
            return self.target.session(engine_id)
        except (OSError, ValueError) as exc:
            raise ConnectionFailed(f"SNMP {self.target.endpoint}: {exc}") from exc

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._session = None

    @property
    def _open(self) -> SnmpSession:
        if self._session is None:
            raise RuntimeError("SnmpClient used outside 'async with'")
        return self._session

    async def get(self, oids: Iterable[str]) -> dict[str, SnmpValue]:
        """GET many OIDs, ``GET_CHUNK`` per PDU; OIDs the agent lacks are left out."""
        wanted = list(dict.fromkeys(oids))
        out: dict[str, SnmpValue] = {}
        for i in range(0, len(wanted), GET_CHUNK):
            out.update(await self._call(partial(self._open.get_many, wanted[i:i + GET_CHUNK])))
        return out

    async def walk(self, prefix: str) -> dict[str, SnmpValue]:
        """Every OID under ``prefix`` by GETBULK, retrying each request on its own."""
        stream = self._open.getbulk(prefix)
        out: dict[str, SnmpValue] = {}
        async for oid, value in self._each(stream):
            out[oid] = value
        return out

    async def _each(
        self, stream: AsyncIterator[tuple[str, SnmpValue]],
    ) -> AsyncIterator[tuple[str, SnmpValue]]:
        while True:
            try:
                if getattr(stream, "_buffer", ()):
                    # hot path: gufo answers from the last response's buffer, no I/O
                    item = await stream.__anext__()
                else:
                    # a timed-out __anext__ leaves the iterator's position unchanged, so
                    # calling it again re-sends the same request: a per-request retry.
                    item = await self._call(stream.__anext__)
            except StopAsyncIteration:
                return
            yield item

    async def _call(self, fn: Callable[[], Awaitable[T]], *, sends: int = 1,
                    tries: int | None = None) -> T:
        """Run one request with the target's retries; translate gufo-snmp errors."""
        refused = ""
        for _ in range(tries or self.target.retries + 1):
            self.requests += sends
            try:
                return await fn()
            except TimeoutError as exc:
                # gufo reports an ICMP "port unreachable" as a TimeoutError with a cause
                refused = str(exc.__cause__ or "") or refused
            except SnmpAuthError as exc:
                raise self._failed(AuthenticationFailed, "v3 credentials refused") from exc
            except OSError as exc:
                raise self._failed(ConnectionFailed, exc.strerror or str(exc)) from exc
            except SnmpError as exc:
                raise self._failed(TransientError, str(exc)) from exc
        if refused:
            raise self._failed(ConnectionFailed, refused)
        hint = " (wrong community?)" if self.target.version == "v2c" else ""
        raise self._failed(ConnectionFailed, f"no answer in {self.target.timeout:g}s × "
                                             f"{self.target.retries + 1} tries{hint}")

    def _failed(self, kind: type[E], why: str) -> E:
        return kind(f"SNMP {self.target.endpoint}: {why}")


async def fetch(
    target: SnmpTarget, *, gets: Sequence[str] = (), walks: Sequence[str] = (),
) -> Fetched:
    """One session: the ``gets`` in as few PDUs as possible, then each walk."""
    start = time.monotonic()
    result = Fetched()
    async with SnmpClient(target) as client:
        if gets:
            result.values.update(await client.get(gets))
        for prefix in walks:
            result.values.update(await client.walk(prefix))
        result.requests = client.requests
    result.seconds = time.monotonic() - start
    return result


async def get(target: SnmpTarget, oids: Sequence[str]) -> dict[str, SnmpValue]:
    """GET ``oids`` from one agent (one session, few PDUs)."""
    return (await fetch(target, gets=oids)).values


async def walk(target: SnmpTarget, prefix: str) -> dict[str, SnmpValue]:
    """GETBULK-walk ``prefix`` on one agent: {oid: value}."""
    return (await fetch(target, walks=[prefix])).values


async def gather_bounded(
    jobs: Iterable[Callable[[], Awaitable[T]]], limit: int,
) -> list[T]:
    """Run the jobs concurrently, at most ``limit`` at a time; results in job order.

    Why bounded: a site has hundreds of BMCs and each walk holds a socket and buffers.
    """
    if limit < 1:
        raise UsageError("concurrency limit must be at least 1")
    gate = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await job()

    return list(await asyncio.gather(*(run(job) for job in jobs)))


def as_text(value: SnmpValue) -> str:
    """An SNMP value as display text (OCTET STRINGs decoded as UTF-8, lossy)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
