"""PoolDriver that runs ``xe`` over SSH on one host of the pool, for sites that prefer the CLI.

Same semantics as :mod:`poolwarden.hypervisor.xenapi` (MAINTENANCE_MODE flag, retryable
codes, the planner's codes); objects are named by **uuid** (the CLI has no refs), so a
snapshot's refs are uuids. ``xe`` run on a pool member is forwarded by xapi to the master
(``xapi_cli.ml``: a command arriving on the local socket of a member is proxied), so any
host of the pool will do and a master hand-over needs no reconnection.

One SSH connection is kept open (:class:`~poolwarden.scripts.ssh.SshSession`) in an
asyncio loop in a background thread; reads that lose it are run again on a new one. The
pool may be given several addresses: the connection goes to the first that answers (the
last one that answered first, on a reconnection); only an unreachable address moves on to
the next, a refused key or an untrusted host key fails at once.

Deadlines: every ``xe`` runs under the remote deadline of
:func:`~poolwarden.scripts.ssh.with_deadline` (coreutils ``timeout`` ends it on the host,
as for scripts) and the client's ``timeout``; each connection attempt is bounded by the
smaller of ``timeout`` and the SSH connect timeout. A command that does not finish in
time is ``ConnectionFailed`` (retryable); a migration that does not is a task whose fate
the pool tells (below).

Tasks: ``xe vm-migrate`` is synchronous, so :meth:`start_migration` runs it in that
loop and returns a driver-local ref ``xe-migrate:<vm>:<target>:<nonce>``. :meth:`task` is
PENDING while the command runs and SUCCESS/FAILURE (with the XenAPI error) once it exits.
A ref this process does not know (the executor resuming after kill -9) or a command whose
fate is unknown (connection lost) is answered from the pool: the VM on its target →
SUCCESS; migrating (``current-operations``) → PENDING; stopped or gone → HANDLE_INVALID
(the executor then decides from :meth:`vm_host`); idle on its source → PENDING for
``orphan_grace`` seconds (an xe started just before the crash may still reach xapi),
then the migration the ref stands for is started again. A VM is never migrated twice:
xapi refuses a second migration of a busy VM (OTHER_OPERATION_IN_PROGRESS), and the
executor then follows the VM instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import re
import secrets
import shlex
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from poolwarden.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    HypervisorError,
    OperationRefused,
    PoolwardenError,
    TransientHypervisorError,
)
from poolwarden.hypervisor.base import HostState, PoolSnapshot, TaskInfo, TaskStatus, VMState
from poolwarden.hypervisor.xe_parse import (
    UUID_RE,
    parse_failure,
    parse_map,
    parse_minimal,
    parse_records,
    parse_set,
    ref_value,
)
from poolwarden.hypervisor.xenapi import MAINTENANCE_KEY, PLANNER_DECIDES, translate
from poolwarden.scripts.ssh import (
    RemoteResult,
    SshSession,
    SshTarget,
    deadline_passed,
    with_deadline,
)

if TYPE_CHECKING:
    from poolwarden.config.models import SshConfig, XeSshConfig

T = TypeVar("T")
#: one xe command: (command, key=value arguments, flags)
Call = tuple[str, Sequence[tuple[str, str]], Sequence[str]]
TASK_PREFIX = "xe-migrate"
MIGRATING = frozenset({"pool_migrate", "migrate_send"})
POWER = {"running": "Running", "paused": "Paused", "suspended": "Suspended",
         "halted": "Halted"}
POOL_FIELDS = "uuid,name-label,master,ha-enabled"
HOST_FIELDS = "uuid,name-label,enabled,cpu_info,address,memory-total,host-metrics-live"
VM_FIELDS = ("uuid,name-label,power-state,memory-overhead,memory-static-max,"
             "last-boot-CPU-flags,resident-on")
MAX_OUTPUT = 16 * 1024 * 1024
READS_AT_ONCE = 4  # sshd's MaxSessions is 10 per connection; migrations take 2 more
OBSERVE_EVERY = 1.0  # s between two looks at the VM of a task this process did not start
_XE_PATH = re.compile(r"^[A-Za-z0-9_./-]+$")
_NO_MATCH = re.compile(r"^No matching (VM|host)s? found$")


class _Loop:
    """An asyncio loop in a daemon thread: the PoolDriver API is synchronous."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="xe-ssh",
                                       daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.submit(coro).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.loop.close()


class XeSshDriver:
    """One pool, reached by SSH on ``target`` (else on ``fallback_addresses``, in order)
    where ``xe`` (the path ``xe``) is run; ``on_connect`` is told each address that
    answered (the factory remembers it for the next driver)."""

    def __init__(self, target: SshTarget, *, xe: str = "xe", timeout: float = 120.0,
                 migration_timeout: float = 4 * 3600.0, master_wait: float = 120.0,
                 orphan_grace: float = 5.0, fallback_addresses: Sequence[str] = (),
                 on_connect: Callable[[str], None] | None = None) -> None:
        if not _XE_PATH.match(xe):
            raise OperationRefused(f"xe path {xe!r} is not a plain path")
        target = dataclasses.replace(target,
                                     connect_timeout=min(target.connect_timeout, timeout))
        self.xe, self.timeout = xe, timeout
        self.migration_timeout, self.master_wait = migration_timeout, master_wait
        self.orphan_grace = orphan_grace
        self._ssh = SshSession(target, fallbacks=fallback_addresses, on_connect=on_connect)
        self._loop = _Loop()
        self._tasks: dict[str, concurrent.futures.Future[RemoteResult]] = {}
        self._reads: asyncio.Semaphore | None = None
        self._live: list[str] = []  # hosts live at the last snapshot
        self._idle: dict[str, float] = {}  # unknown task ref → when its VM was seen idle
        self._seen: dict[str, float] = {}  # unknown task ref → when the pool was last asked
        try:
            self._loop.call(self._ssh.connection())  # fail now on an untrusted host key
        except BaseException:
            self._loop.stop()
            raise

    @property
    def target(self) -> SshTarget:
        """Where the driver is (or was last) connected."""
        return self._ssh.target

    def __enter__(self) -> XeSshDriver:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.thread.is_alive():
            for future in self._tasks.values():
                future.cancel()  # the migration itself goes on in the pool
            # closing a dead connection is not worth an error
            with contextlib.suppress(PoolwardenError, concurrent.futures.TimeoutError, OSError):
                self._loop.submit(self._ssh.close()).result(timeout=5)
            self._loop.stop()

    # -- running xe ---------------------------------------------------------------------
    def _line(self, command: str, args: Sequence[tuple[str, str]], flags: Sequence[str] = (),
              ) -> str:
        """The command line: constants and validated values, every word shell-quoted."""
        return shlex.join([self.xe, command, *(f"{k}={v}" for k, v in args), *flags])

    async def _run(self, line: str, *, read: bool, timeout: float) -> RemoteResult:
        """``line`` under both deadlines; a remote deadline that won the race (exit status
        of ``timeout``) is a timeout too, so a result is ``timed_out`` either way."""
        if self._reads is None:
            self._reads = asyncio.Semaphore(READS_AT_ONCE)
        command = with_deadline(line, timeout)
        if not read:
            result = await self._ssh.run(command, timeout=timeout, max_output=MAX_OUTPUT)
        else:
            async with self._reads:
                result = await self._ssh.run(command, timeout=timeout, max_output=MAX_OUTPUT,
                                             retry=True)
        if deadline_passed(result, timeout):
            return dataclasses.replace(result, exit_status=None, timed_out=True)
        return result

    def _xe(self, command: str, *args: tuple[str, str], flags: Sequence[str] = (),
            read: bool = True) -> str:
        """Run one ``xe`` command; its stdout, or the failure as one of our errors."""
        return self._many([(command, args, flags)], read=read)[0]

    def _many(self, calls: Sequence[Call], *, read: bool = True) -> list[str]:
        """Run several commands at once, each on its own channel of the one connection."""
        results = self._results(calls, read=read)
        return [self._stdout(c[0], r) for c, r in zip(calls, results, strict=True)]

    def _results(self, calls: Sequence[Call], *, read: bool = True) -> list[RemoteResult]:
        lines = [self._line(c, a, f) for c, a, f in calls]

        async def run_all() -> list[RemoteResult]:
            return list(await asyncio.gather(
                *(self._run(line, read=read, timeout=self.timeout) for line in lines)))

        return self._loop.call(run_all())

    def _stdout(self, command: str, result: RemoteResult) -> str:
        if result.timed_out or result.exit_status is None:
            raise ConnectionFailed(f"{self.target.where()}: xe {command} did not finish "
                                   f"within {self.timeout:g}s")
        if result.exit_status != 0:
            raise self._error(command, result)
        if result.stdout_truncated:
            raise HypervisorError("XE_OUTPUT_TRUNCATED", [str(MAX_OUTPUT)],
                                  context=f"xe {command}")
        return result.stdout.decode("utf-8", "replace")

    def _error(self, command: str, result: RemoteResult) -> PoolwardenError:
        return xe_error(result, f"xe {command} on {self.target.where()}")

    def _records(self, command: str, *args: tuple[str, str]) -> list[dict[str, str]]:
        return parse_records(self._xe(command, *args))

    # -- reading ------------------------------------------------------------------------
    def snapshot(self, evacuating: str | None = None) -> PoolSnapshot:
        calls: list[Call] = [
            ("pool-list", [("params", POOL_FIELDS)], ()),
            ("host-list", [("params", HOST_FIELDS)], ()),
            ("vm-list", [("is-control-domain", "false"), ("is-a-snapshot", "false"),
                         ("params", VM_FIELDS)], ()),
        ]
        if evacuating is not None:
            calls.append(("host-get-vms-which-prevent-evacuation",
                          [("uuid", _uuid(evacuating))], ()))  # uuid, name-label, reason
        # free memory is per host: ask at once for the hosts live at the last snapshot
        guess = list(self._live)
        calls += [("host-compute-free-memory", [("uuid", u)], ()) for u in guess]
        results = self._results(calls)
        out = [self._stdout(c[0], r) for c, r in zip(calls[:len(calls) - len(guess)],
                                                     results, strict=False)]
        pools, hosts, vms = (parse_records(o) for o in out[:3])
        if len(pools) != 1:
            raise HypervisorError("XE_UNEXPECTED_OUTPUT", [f"{len(pools)} pools"],
                                  context="xe pool-list")
        live = [h["uuid"] for h in hosts if h.get("host-metrics-live") == "true"]
        free = {u: self._stdout("host-compute-free-memory", r)  # a host now down: ignored
                for u, r in zip(guess, results[len(out):], strict=True) if u in live}
        missing = [u for u in live if u not in free]
        free.update(zip(missing, self._many(
            [("host-compute-free-memory", [("uuid", u)], ()) for u in missing]), strict=True))
        self._live = live
        blocked: dict[str, tuple[str, ...]] = {}
        for rec in parse_records(out[3]) if evacuating is not None else []:
            err = tuple(rec.get("reason", "").split(","))
            if err[0] and err[0] not in PLANNER_DECIDES:
                blocked[rec["uuid"]] = err
        host_states = [self._host(h, free) for h in hosts]
        host_states.sort(key=lambda h: h.name)
        uuids = {h.ref for h in host_states}
        vm_states = [self._vm(v, uuids, blocked) for v in vms]
        vm_states.sort(key=lambda v: (v.name, v.ref))
        pool = pools[0]
        return PoolSnapshot(
            ref=pool["uuid"], name=pool.get("name-label") or "pool", master=pool["master"],
            hosts=tuple(host_states), vms=tuple(vm_states),
            ha_enabled=pool.get("ha-enabled") == "true")

    @staticmethod
    def _host(h: dict[str, str], free: dict[str, str]) -> HostState:
        cpu = parse_map(h.get("cpu_info", ""))
        live = h.get("host-metrics-live") == "true"
        return HostState(
            ref=h["uuid"], name=h.get("name-label", ""), address=h.get("address", ""),
            enabled=h.get("enabled") == "true", live=live,
            memory_total=_int(h.get("memory-total")),
            memory_free=_int(free.get(h["uuid"], "").strip()) if live else 0,
            cpu_features=cpu.get("features_hvm") or cpu.get("features", ""))

    @staticmethod
    def _vm(v: dict[str, str], hosts: set[str], blocked: dict[str, tuple[str, ...]]) -> VMState:
        resident = ref_value(v.get("resident-on", ""))
        return VMState(
            ref=v["uuid"], name=v.get("name-label", ""),
            power_state=POWER.get(v.get("power-state", ""), v.get("power-state", "")),
            resident_on=resident if resident in hosts else None,
            memory=_int(v.get("memory-static-max")) + _int(v.get("memory-overhead")),
            cpu_features=parse_map(v.get("last-boot-CPU-flags", "")).get("features", ""),
            blocked=blocked.get(v["uuid"], ()))

    def vm_host(self, vm: str) -> str | None:
        recs = self._records("vm-list", ("uuid", _uuid(vm)),
                             ("params", "uuid,power-state,resident-on"))
        if not recs or recs[0].get("power-state") not in ("running", "paused"):
            return None
        resident = ref_value(recs[0].get("resident-on", ""))
        return resident if UUID_RE.match(resident) else None

    def cpu_features(self) -> dict[str, str]:
        return {h.name: h.cpu_features for h in self.snapshot().hosts}

    def task(self, ref: str) -> TaskInfo:
        future = self._tasks.get(ref)
        if future is not None and not future.done():
            return TaskInfo(ref, TaskStatus.PENDING, 0.0)
        if future is not None:
            try:
                result = future.result()
            except ConnectionFailed:
                result = None  # the command's fate is unknown: ask the pool
            if result is not None and not result.timed_out and result.exit_status == 0:
                return TaskInfo(ref, TaskStatus.SUCCESS, 1.0)
            if result is not None and result.exit_status not in (0, None):
                err = self._error("vm-migrate", result)
                if isinstance(err, HypervisorError):
                    return TaskInfo(ref, TaskStatus.FAILURE, 1.0, (err.code, *err.params))
        return self._observe(ref)

    def _observe(self, ref: str) -> TaskInfo:
        """A migration this process cannot follow itself: what the pool says of its VM."""
        parts = ref.split(":")
        if len(parts) != 4 or parts[0] != TASK_PREFIX or not all(
                UUID_RE.match(p) for p in parts[1:3]):
            raise HypervisorError("HANDLE_INVALID", ["task", ref], context="task")
        vm, target = parts[1], parts[2]
        last = self._seen.get(ref)
        if last is not None and time.monotonic() - last < OBSERVE_EVERY:
            return TaskInfo(ref, TaskStatus.PENDING, 0.0)  # the executor polls faster
        self._seen[ref] = time.monotonic()
        recs = self._records("vm-list", ("uuid", vm),
                             ("params", "uuid,power-state,current-operations,resident-on"))
        rec = recs[0] if recs else {}
        if rec.get("power-state") not in ("running", "paused"):
            raise HypervisorError("HANDLE_INVALID", ["task", ref], context="task")
        if ref_value(rec.get("resident-on", "")) == target:
            return TaskInfo(ref, TaskStatus.SUCCESS, 1.0)
        if MIGRATING & set(parse_set(rec.get("current-operations", ""))):
            self._idle.pop(ref, None)
            return TaskInfo(ref, TaskStatus.PENDING, 0.0)
        # Not moved, not moving: the command may still be on its way (an xe started just
        # before a kill -9), or it never reached xapi. Wait a little, then keep the promise
        # the ref stands for; xapi runs one migration of a VM at a time (a second one
        # fails with OTHER_OPERATION_IN_PROGRESS, and the executor then follows the VM).
        since = self._idle.setdefault(ref, time.monotonic())
        if time.monotonic() - since >= self.orphan_grace:
            del self._idle[ref]
            self._tasks[ref] = self._migrate(vm, target)
        return TaskInfo(ref, TaskStatus.PENDING, 0.0)

    # -- acting -------------------------------------------------------------------------
    def designate_master(self, host: str) -> None:
        with contextlib.suppress(ConnectionFailed):  # xapi restarts; the wait below decides
            self._xe("pool-designate-new-master", ("host-uuid", _uuid(host)), read=False)
        deadline, delay = time.monotonic() + self.master_wait, 0.1
        while True:
            try:
                if parse_minimal(self._xe("pool-list", ("params", "master"),
                                          flags=["--minimal"])) == [host]:
                    return
                problem = "the pool still names another master"
            except (ConnectionFailed, TransientHypervisorError) as exc:
                problem = str(exc)
            if time.monotonic() > deadline:
                raise ConnectionFailed(f"{host} never became master: {problem}")
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def disable_host(self, host: str) -> None:
        self._xe("host-disable", ("uuid", _uuid(host)), read=False)
        # param-set replaces the key if present: idempotent, as the XenAPI driver's flag
        self._xe("host-param-set", ("uuid", host), (f"other-config:{MAINTENANCE_KEY}", "true"),
                 read=False)

    def enable_host(self, host: str) -> None:
        # xe host-enable itself removes other-config:MAINTENANCE_MODE before enabling
        # (cli_operations.ml, host_enable), exactly what the XenAPI driver does in two calls
        self._xe("host-enable", ("uuid", _uuid(host)), read=False)

    def shutdown_host(self, host: str) -> None:
        self._xe("host-shutdown", ("uuid", _uuid(host)), read=False)

    def start_migration(self, vm: str, target: str) -> str:
        ref = f"{TASK_PREFIX}:{_uuid(vm)}:{_uuid(target)}:{secrets.token_hex(4)}"
        self._tasks[ref] = self._migrate(vm, target)
        return ref

    def _migrate(self, vm: str, target: str) -> concurrent.futures.Future[RemoteResult]:
        """``xe vm-migrate`` (synchronous) running in the loop: the task's command."""
        line = self._line("vm-migrate", [("uuid", vm), ("host-uuid", target),
                                         ("live", "true")])
        return self._loop.submit(self._run(line, read=False, timeout=self.migration_timeout))

    def forget_task(self, ref: str) -> None:
        self._tasks.pop(ref, None)
        self._idle.pop(ref, None)
        self._seen.pop(ref, None)


def xe_error(result: RemoteResult, context: str) -> PoolwardenError:
    """What a failed ``xe`` printed, as one of our errors (formats: :mod:`.xe_parse`)."""
    f = parse_failure(result.stderr.decode("utf-8", "replace"),
                      result.stdout.decode("utf-8", "replace"))
    if f.kind == "connection":
        return ConnectionFailed(f"{context}: {f.params[0]}")
    if f.kind == "auth" or f.code == "SESSION_AUTHENTICATION_FAILED":
        return AuthenticationFailed(f"{context}: xapi refused the login")
    if f.kind == "cli":
        m = _NO_MATCH.match(f.params[0])
        if m:  # what XAPI says of a uuid it does not know
            return HypervisorError("UUID_INVALID", [m[1]], context=context)
        return HypervisorError("XE_CLI_FAILURE", f.params, context=context)
    return translate([f.code, *f.params], context)  # RETRYABLE_CODES → transient


def _uuid(value: str) -> str:
    """Only uuids reach a command line; a XenAPI ref (another driver's journal) is refused."""
    if not UUID_RE.match(value):
        raise OperationRefused(f"{value!r} is not a uuid: the xe_ssh driver names objects by "
                               "uuid (a remediation journaled by another driver cannot be "
                               "continued by this one)")
    return value


def _int(v: str | None) -> int:
    try:
        return int(v or "")
    except ValueError:
        return 0


def driver_from_config(cfg: XeSshConfig, ssh: SshConfig, *, pool: str,
                       first: str | None = None,
                       on_connect: Callable[[str], None] | None = None) -> XeSshDriver:
    """The driver for a pool's ``xe_ssh:`` section (``ssh`` resolved by the caller):
    ``address`` then ``fallback_addresses``, after ``first`` (the last one that answered)."""
    addresses = list(dict.fromkeys([*([first] if first else []), cfg.address,
                                    *cfg.fallback_addresses]))
    target = SshTarget(pool, addresses[0], ssh.key_file, ssh.known_hosts, port=ssh.port,
                       user=ssh.user, connect_timeout=ssh.connect_timeout)
    return XeSshDriver(target, xe=cfg.xe, timeout=cfg.timeout,
                       fallback_addresses=addresses[1:], on_connect=on_connect)
