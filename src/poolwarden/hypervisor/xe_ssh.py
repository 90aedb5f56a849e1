"""PoolDriver that runs ``xe`` over SSH on one host of the pool, for sites that prefer the CLI.

Same semantics as :mod:`poolwarden.hypervisor.xenapi` (MAINTENANCE_MODE flag, retryable
codes, the planner's codes); objects are named by **uuid** (the CLI has no refs), so a
snapshot's refs are uuids. ``xe`` run on a pool member is forwarded by xapi to the master
(``xapi_cli.ml``: a command arriving on the local socket of a member is proxied), so any
host of the pool will do and a master hand-over needs no reconnection.

The commands run on one SSH connection kept open in an asyncio loop in a background
thread, tried on the pool's addresses in turn, each under a deadline
(:mod:`poolwarden.hypervisor._xe_session`). A command that does not finish in time is
``ConnectionFailed`` (retryable); a migration that does not is a task whose fate the pool
tells (below).

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

import concurrent.futures
import contextlib
import secrets
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from poolwarden.errors import (
    ConnectionFailed,
    HypervisorError,
    OperationRefused,
    TransientHypervisorError,
)
from poolwarden.hypervisor._xe_session import Call, XeSession, xe_error
from poolwarden.hypervisor.base import HostState, PoolSnapshot, TaskInfo, TaskStatus, VMState
from poolwarden.hypervisor.xe_parse import (
    UUID_RE,
    parse_map,
    parse_minimal,
    parse_records,
    parse_set,
    ref_value,
)
from poolwarden.hypervisor.xenapi import MAINTENANCE_KEY, PLANNER_DECIDES
from poolwarden.scripts.ssh import RemoteResult, SshSession, SshTarget

if TYPE_CHECKING:
    from poolwarden.config.models import SshConfig, XeSshConfig

__all__ = ["XeSshDriver", "driver_from_config", "xe_error"]

TASK_PREFIX = "xe-migrate"
MIGRATING = frozenset({"pool_migrate", "migrate_send"})
POWER = {"running": "Running", "paused": "Paused", "suspended": "Suspended",
         "halted": "Halted"}
POOL_FIELDS = "uuid,name-label,master,ha-enabled"
HOST_FIELDS = "uuid,name-label,enabled,cpu_info,address,memory-total,host-metrics-live"
VM_FIELDS = ("uuid,name-label,power-state,memory-overhead,memory-static-max,"
             "last-boot-CPU-flags,resident-on")
OBSERVE_EVERY = 1.0  # s between two looks at the VM of a task this process did not start


class XeSshDriver:
    """One pool, reached by SSH on ``target`` (else on ``fallback_addresses``, in order)
    where ``xe`` (the path ``xe``) is run; ``on_connect`` is told each address that
    answered (the factory remembers it for the next driver)."""

    def __init__(self, target: SshTarget, *, xe: str = "xe", timeout: float = 120.0,
                 migration_timeout: float = 4 * 3600.0, master_wait: float = 120.0,
                 orphan_grace: float = 5.0, fallback_addresses: Sequence[str] = (),
                 on_connect: Callable[[str], None] | None = None) -> None:
        #: how xe commands get run (the connection, its failover, the deadlines)
        self._cli = XeSession(target, xe=xe, timeout=timeout,
                              fallback_addresses=fallback_addresses, on_connect=on_connect)
        self.xe, self.timeout = xe, timeout
        self.migration_timeout, self.master_wait = migration_timeout, master_wait
        self.orphan_grace = orphan_grace
        self._tasks: dict[str, concurrent.futures.Future[RemoteResult]] = {}
        self._live: list[str] = []  # hosts live at the last snapshot
        self._idle: dict[str, float] = {}  # unknown task ref → when its VM was seen idle
        self._seen: dict[str, float] = {}  # unknown task ref → when the pool was last asked

    @property
    def target(self) -> SshTarget:
        """Where the driver is (or was last) connected."""
        return self._cli.target

    @property
    def _ssh(self) -> SshSession:
        """The SSH connection (tests look at its addresses)."""
        return self._cli.ssh

    def __enter__(self) -> XeSshDriver:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._cli.open:
            for future in self._tasks.values():
                future.cancel()  # the migration itself goes on in the pool
            self._cli.close()

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
        results = self._cli.results(calls)
        out = [self._cli.stdout(c[0], r) for c, r in zip(calls[:len(calls) - len(guess)],
                                                         results, strict=False)]
        pools, hosts, vms = (parse_records(o) for o in out[:3])
        if len(pools) != 1:
            raise HypervisorError("XE_UNEXPECTED_OUTPUT", [f"{len(pools)} pools"],
                                  context="xe pool-list")
        live = [h["uuid"] for h in hosts if h.get("host-metrics-live") == "true"]
        free = {u: self._cli.stdout("host-compute-free-memory", r)  # a host now down: ignored
                for u, r in zip(guess, results[len(out):], strict=True) if u in live}
        missing = [u for u in live if u not in free]
        free.update(zip(missing, self._cli.many(
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
        recs = self._cli.records("vm-list", ("uuid", _uuid(vm)),
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
                err = self._cli.error("vm-migrate", result)
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
        recs = self._cli.records("vm-list", ("uuid", vm),
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
            self._cli.run("pool-designate-new-master", ("host-uuid", _uuid(host)), read=False)
        deadline, delay = time.monotonic() + self.master_wait, 0.1
        while True:
            try:
                if parse_minimal(self._cli.run("pool-list", ("params", "master"),
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
        self._cli.run("host-disable", ("uuid", _uuid(host)), read=False)
        # param-set replaces the key if present: idempotent, as the XenAPI driver's flag
        self._cli.run("host-param-set", ("uuid", host),
                      (f"other-config:{MAINTENANCE_KEY}", "true"), read=False)

    def enable_host(self, host: str) -> None:
        # xe host-enable itself removes other-config:MAINTENANCE_MODE before enabling
        # (cli_operations.ml, host_enable), exactly what the XenAPI driver does in two calls
        self._cli.run("host-enable", ("uuid", _uuid(host)), read=False)

    def shutdown_host(self, host: str) -> None:
        self._cli.run("host-shutdown", ("uuid", _uuid(host)), read=False)

    def start_migration(self, vm: str, target: str) -> str:
        ref = f"{TASK_PREFIX}:{_uuid(vm)}:{_uuid(target)}:{secrets.token_hex(4)}"
        self._tasks[ref] = self._migrate(vm, target)
        return ref

    def _migrate(self, vm: str, target: str) -> concurrent.futures.Future[RemoteResult]:
        """``xe vm-migrate`` (synchronous) running in the loop: the task's command."""
        return self._cli.start("vm-migrate", [("uuid", vm), ("host-uuid", target),
                                              ("live", "true")], timeout=self.migration_timeout)

    def forget_task(self, ref: str) -> None:
        self._tasks.pop(ref, None)
        self._idle.pop(ref, None)
        self._seen.pop(ref, None)


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
