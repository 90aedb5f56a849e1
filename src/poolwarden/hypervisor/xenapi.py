"""PoolDriver over the official XenAPI SDK (XML-RPC).

The boundary where XenAPI's ``Failure``, XML-RPC faults and socket errors become
:mod:`poolwarden.errors`. It follows HOST_IS_SLAVE to the master (XAPI refuses logins on
pool members) and reconnects after a master hand-over, when XAPI restarts and every
session is gone.

A pool may be given several URLs (its hosts'): the driver logs in at the first that
answers, and only a URL that cannot be reached moves on to the next one — refused
credentials are raised at once. Once logged in, ``url`` is the master's (learned from
HOST_IS_SLAVE and from a hand-over); it is tried first when the driver connects again
(after a connection failure, the next call does) and is told to ``on_connect``, so the
next driver of the pool can start there too.
"""

from __future__ import annotations

import contextlib
import http.client
import time
import xmlrpc.client
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import XenAPI

from poolwarden.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    HypervisorError,
    PoolwardenError,
    TransientHypervisorError,
)
from poolwarden.hypervisor.base import (
    NULL_REF,
    HostState,
    PoolSnapshot,
    TaskInfo,
    TaskStatus,
    VMState,
)

#: Failure codes that clear up by themselves: the caller may retry later.
RETRYABLE_CODES = frozenset({
    "OTHER_OPERATION_IN_PROGRESS", "HOST_EVACUATE_IN_PROGRESS", "HOST_STILL_BOOTING",
    "TOO_BUSY", "CANNOT_CONTACT_HOST", "SESSION_INVALID", "POOL_JOINING_HOST_CONNECTION_FAILED",
})
#: get_vms_which_prevent_evacuation codes the planner decides itself, per target.
PLANNER_DECIDES = frozenset({
    "HOST_NOT_ENOUGH_FREE_MEMORY", "NO_HOSTS_AVAILABLE", "VM_INCOMPATIBLE_WITH_THIS_HOST",
})
MAINTENANCE_KEY = "MAINTENANCE_MODE"  # the other_config flag XenCenter shows and honours


def translate(details: Any, context: str = "") -> HypervisorError:
    """A XenAPI ``Failure.details`` list as one of our exceptions."""
    seq = [str(d) for d in details] if isinstance(details, list | tuple) else [str(details)]
    code, params = (seq[0] if seq else "UNKNOWN"), seq[1:]
    cls = TransientHypervisorError if code in RETRYABLE_CODES else HypervisorError
    return cls(code, params, context=context)


class _BoundedConnect:
    """Connect (and the TLS handshake) within ``connect_timeout``, then read within
    ``timeout``: a powered-off host drops the SYN, and waiting the whole read timeout
    (which must cover slow XAPI calls) for it would delay the fall-back to the next URL."""

    read_timeout: float
    sock: Any

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.sock.settimeout(self.read_timeout)


class _HTTPConnection(_BoundedConnect, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_BoundedConnect, http.client.HTTPSConnection):
    pass


class _Transport(xmlrpc.client.Transport):
    """Plain HTTP with timeouts: a hung XAPI must not hang poolwarden."""

    def __init__(self, timeout: float, connect_timeout: float) -> None:
        super().__init__()
        self.timeout, self.connect_timeout = timeout, connect_timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        held, conn_ = self._connection
        if held == host and conn_ is not None:
            return conn_  # keep-alive: the same host's open connection
        chost, self._extra_headers, _ = self.get_host_info(host)
        conn = _HTTPConnection(chost, timeout=self.connect_timeout)
        conn.read_timeout = self.timeout
        self._connection = host, conn
        return conn


class _SafeTransport(xmlrpc.client.SafeTransport):
    def __init__(self, timeout: float, connect_timeout: float, verify: bool) -> None:
        import ssl

        ctx = ssl.create_default_context() if verify else ssl._create_unverified_context()  # noqa: S323
        super().__init__(context=ctx)
        self.ssl_context = ctx
        self.timeout, self.connect_timeout = timeout, connect_timeout

    def make_connection(self, host: Any) -> http.client.HTTPSConnection:
        held, conn_ = self._connection
        if held == host and isinstance(conn_, http.client.HTTPSConnection):
            return conn_
        chost, self._extra_headers, _ = self.get_host_info(host)
        conn = _HTTPSConnection(chost, timeout=self.connect_timeout, context=self.ssl_context)
        conn.read_timeout = self.timeout
        self._connection = host, conn
        return conn


def _int(v: Any, default: int = 0) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


class XenAPIDriver:
    """One pool, reached through any of its hosts' URLs: ``url``, else ``fallback_urls``
    in order; ``on_connect`` is told each URL logged in at (the master's)."""

    def __init__(self, url: str, user: str, password: str, *, timeout: float = 30.0,
                 connect_timeout: float = 5.0,
                 verify_tls: bool = True, originator: str = "poolwarden",
                 fallback_urls: Sequence[str] = (),
                 on_connect: Callable[[str], None] | None = None) -> None:
        self.urls = list(dict.fromkeys(u.rstrip("/") for u in (url, *fallback_urls)))
        self.url, self.user, self._password = self.urls[0], user, password
        self.timeout, self.verify_tls, self.originator = timeout, verify_tls, originator
        self.connect_timeout = min(connect_timeout, timeout)
        self._on_connect = on_connect
        self._session: Any = None
        self._connect_any()

    # -- connection -------------------------------------------------------------------
    def _new_session(self, url: str) -> Any:
        transport: xmlrpc.client.Transport = (
            _SafeTransport(self.timeout, self.connect_timeout, self.verify_tls)
            if url.startswith("https") else _Transport(self.timeout, self.connect_timeout)
        )
        return XenAPI.Session(url, transport=transport)

    def _connect_any(self) -> None:
        """Log in at the last URL that worked (the master), else at the others in order;
        only ``ConnectionFailed`` moves on to the next URL."""
        tried = list(dict.fromkeys([self.url, *self.urls]))
        failures: list[ConnectionFailed] = []
        for url in tried:
            try:
                self._connect(url)
                return
            except ConnectionFailed as exc:
                failures.append(exc)
        if len(failures) == 1:
            raise failures[0]
        raise ConnectionFailed(f"no XAPI of the pool answered (tried {', '.join(tried)}): "
                               + "; ".join(str(f) for f in failures)) from failures[-1]

    def _connect(self, url: str, *, redirects: int = 3) -> None:
        session = self._new_session(url)
        try:
            session.login_with_password(self.user, self._password, "2.0", self.originator)
        except XenAPI.Failure as exc:
            details = list(exc.details)
            if details and details[0] == "HOST_IS_SLAVE" and len(details) > 1 and redirects:
                self._connect(self._url_for(str(details[1]), url), redirects=redirects - 1)
                return
            if details and details[0] == "SESSION_AUTHENTICATION_FAILED":
                raise AuthenticationFailed(
                    f"XAPI at {url} refused the credentials of user {self.user!r}"
                ) from exc
            raise translate(details, f"login at {url}") from exc
        except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError) as exc:
            raise ConnectionFailed(f"cannot reach XAPI at {url}: {exc}") from exc
        except xmlrpc.client.Fault as exc:
            raise ConnectionFailed(f"XAPI at {url} answered a fault: {exc.faultString}") from exc
        self._session, self.url = session, url
        if self._on_connect is not None:
            self._on_connect(url)

    def _url_for(self, address: str, base: str | None = None) -> str:
        """The URL of another host of the pool: the scheme (and port, if none given) of
        ``base`` (default: the current URL)."""
        parts = urlsplit(base or self.url)
        if ":" in address or parts.port is None:
            return f"{parts.scheme}://{address}"
        return f"{parts.scheme}://{address}:{parts.port}"

    def _call(self, method: str, *args: Any) -> Any:
        """Call ``class.method`` (or ``Async.class.method``) translating every failure.

        A connection failure drops the session: the next call logs in again (the last
        good URL first, then the others). A refused connection sent nothing, so the call
        is tried again at once on the new session."""
        for attempt in range(2):
            if self._session is None:
                self._connect_any()
            target: Any = self._session.xenapi
            for part in method.split("."):
                target = getattr(target, part)
            try:
                return target(*args)
            except XenAPI.Failure as exc:
                details = list(exc.details)
                if details and details[0] == "HOST_IS_SLAVE" and attempt == 0:
                    # The SDK re-logged in after SESSION_INVALID and met a new master;
                    # if its address cannot be reached from here, the other URLs can.
                    try:
                        self._connect(self._url_for(str(details[1])))
                    except ConnectionFailed:
                        self._connect_any()
                    continue
                raise translate(details, method) from exc
            except xmlrpc.client.Fault as exc:
                if "valid session" in str(exc.faultString) and attempt == 0:
                    self._connect_any()
                    continue
                raise ConnectionFailed(f"{method}: XML-RPC fault {exc.faultString}") from exc
            except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError) as exc:
                # why no logout: the host may be gone; XAPI expires an orphaned session
                self._session = None
                if isinstance(exc, ConnectionRefusedError) and attempt == 0:
                    continue
                raise ConnectionFailed(f"{method} at {self.url}: {exc}") from exc
        raise ConnectionFailed(f"{method}: no usable session")  # pragma: no cover

    def __enter__(self) -> XenAPIDriver:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._session is not None:
            # Logging out of a dead session is not worth an error.
            with contextlib.suppress(XenAPI.Failure, OSError, http.client.HTTPException,
                                     xmlrpc.client.Error):
                self._session.xenapi.session.logout()
            self._session = None

    # -- reading ----------------------------------------------------------------------
    def snapshot(self, evacuating: str | None = None) -> PoolSnapshot:
        pools = self._call("pool.get_all_records")
        pool_ref, pool = next(iter(pools.items()))
        hosts = self._call("host.get_all_records")
        metrics = self._call("host_metrics.get_all_records")
        vms = self._call("VM.get_all_records")
        host_states = []
        for ref, h in sorted(hosts.items(), key=lambda kv: kv[1]["name_label"]):
            m = metrics.get(h.get("metrics"), {})
            live = bool(m.get("live", False))
            cpu = h.get("cpu_info", {}) or {}
            host_states.append(HostState(
                ref=ref, name=h["name_label"], address=h.get("address", ""),
                enabled=bool(h["enabled"]), live=live,
                memory_total=_int(m.get("memory_total")),
                memory_free=_int(self._call("host.compute_free_memory", ref)) if live else 0,
                cpu_features=cpu.get("features_hvm") or cpu.get("features", ""),
            ))
        blocked: dict[str, tuple[str, ...]] = {}
        if evacuating is not None:
            for vm, err in self._call(
                    "host.get_vms_which_prevent_evacuation", evacuating).items():
                if err and err[0] not in PLANNER_DECIDES:
                    blocked[vm] = tuple(str(e) for e in err)
        vm_states = []
        for ref, v in vms.items():
            if v.get("is_a_template") or v.get("is_control_domain") or v.get("is_a_snapshot"):
                continue
            resident = v.get("resident_on")  # OpaqueRef:NULL is not in hosts
            flags = v.get("last_boot_CPU_flags", {}) or {}
            vm_states.append(VMState(
                ref=ref, name=v["name_label"], power_state=v["power_state"],
                resident_on=resident if resident and resident in hosts else None,
                memory=_int(v.get("memory_static_max")) + _int(v.get("memory_overhead")),
                cpu_features=flags.get("features", ""),
                blocked=blocked.get(ref, ()),
            ))
        vm_states.sort(key=lambda v: (v.name, v.ref))
        return PoolSnapshot(
            ref=pool_ref, name=pool.get("name_label") or "pool", master=pool["master"],
            hosts=tuple(host_states), vms=tuple(vm_states),
            ha_enabled=bool(pool.get("ha_enabled", False)),
        )

    def vm_host(self, vm: str) -> str | None:
        try:
            rec = self._call("VM.get_record", vm)
        except HypervisorError as exc:
            if exc.code == "HANDLE_INVALID":
                return None
            raise
        resident = rec.get("resident_on")
        if rec.get("power_state") not in ("Running", "Paused") or not resident:
            return None
        return str(resident) if resident != NULL_REF else None

    def cpu_features(self) -> dict[str, str]:
        return {h.name: h.cpu_features for h in self.snapshot().hosts}

    def task(self, ref: str) -> TaskInfo:
        rec = self._call("task.get_record", ref)
        return TaskInfo(
            ref=ref, status=TaskStatus(rec["status"]),
            progress=float(rec.get("progress", 0.0)),
            error=tuple(str(e) for e in rec.get("error_info", [])),
        )

    # -- acting -----------------------------------------------------------------------
    def designate_master(self, host: str) -> None:
        address = self._call("host.get_address", host)
        # The old master's XAPI restarts under us; the wait below decides.
        with contextlib.suppress(ConnectionFailed):
            self._call("pool.designate_new_master", host)
        self._await_master(self._url_for(address))

    def _await_master(self, url: str, deadline_s: float = 120.0) -> None:
        """After a hand-over, wait until the new master accepts a login."""
        deadline = time.monotonic() + deadline_s
        delay = 0.1
        while True:
            try:
                self._connect(url)
                return
            except (ConnectionFailed, TransientHypervisorError, HypervisorError) as exc:
                if time.monotonic() > deadline:
                    raise ConnectionFailed(f"new master at {url} never answered: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def disable_host(self, host: str) -> None:
        self._call("host.disable", host)
        self._set_maintenance_flag(host, True)

    def enable_host(self, host: str) -> None:
        self._set_maintenance_flag(host, False)
        self._call("host.enable", host)

    def _set_maintenance_flag(self, host: str, on: bool) -> None:
        other = self._call("host.get_other_config", host)
        if MAINTENANCE_KEY in other:
            self._call("host.remove_from_other_config", host, MAINTENANCE_KEY)
        if on:
            self._call("host.add_to_other_config", host, MAINTENANCE_KEY, "true")

    def start_migration(self, vm: str, target: str) -> str:
        return str(self._call("Async.VM.pool_migrate", vm, target, {"live": "true"}))

    def forget_task(self, ref: str) -> None:
        try:
            self._call("task.destroy", ref)
        except HypervisorError as exc:
            if exc.code != "HANDLE_INVALID":
                raise

    def shutdown_host(self, host: str) -> None:
        self._call("host.shutdown", host)


def connect_with_retry(factory: Callable[[], XenAPIDriver], attempts: int = 3,
                       delay: float = 0.5) -> XenAPIDriver:
    """Build a driver, retrying transient failures (an XAPI restarting, a busy master)."""
    for i in range(attempts):
        try:
            return factory()
        except PoolwardenError as exc:
            if not exc.retryable or i == attempts - 1:
                raise
            time.sleep(delay * (2**i))
    raise AssertionError("unreachable")  # pragma: no cover
