"""What poolwarden knows about a pool, and the one interface every hypervisor driver offers.

The planner works on a :class:`PoolSnapshot` only (pure data), the executor talks to a
:class:`PoolDriver`. Memory figures are bytes. A VM's ``memory`` is what a host must have
free to receive it (``memory_static_max + memory_overhead``, the conservative figure XAPI
checks for a live migration); a host's ``memory_free`` is ``host.compute_free_memory``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

NULL_REF = "OpaqueRef:NULL"


@dataclass(frozen=True, slots=True)
class HostState:
    ref: str
    name: str
    address: str
    enabled: bool
    live: bool
    memory_total: int
    memory_free: int
    #: CPU feature words ("%08x-%08x-…") the host offers to HVM guests; "" if unknown.
    cpu_features: str = ""


@dataclass(frozen=True, slots=True)
class VMState:
    ref: str
    name: str
    power_state: str  # Running | Paused | Suspended | Halted, as XAPI spells it
    resident_on: str | None  # host ref; None when the VM runs nowhere
    memory: int
    #: CPU features the VM booted with; a target must offer all of them ("" = no constraint).
    cpu_features: str = ""
    #: Why the VM cannot leave its host at all, as a XenAPI error (code, params…), e.g.
    #: ("VM_REQUIRES_SR", vm, sr) for a VM on local storage; () when it can move.
    blocked: tuple[str, ...] = ()

    @property
    def running(self) -> bool:
        """Running and paused VMs occupy their host and must be moved off it."""
        return self.power_state in ("Running", "Paused") and self.resident_on is not None


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    ref: str
    name: str
    master: str  # host ref
    hosts: tuple[HostState, ...]
    vms: tuple[VMState, ...]
    ha_enabled: bool = False

    def host(self, ref_or_name: str) -> HostState | None:
        """Find a host by ref or by name label."""
        for h in self.hosts:
            if ref_or_name in (h.ref, h.name):
                return h
        return None

    def vms_on(self, host_ref: str) -> list[VMState]:
        """The VMs that occupy ``host_ref`` (running or paused)."""
        return [v for v in self.vms if v.running and v.resident_on == host_ref]

    def layout(self) -> dict[str, list[str]]:
        """host name → sorted names of the VMs occupying it: the before/after of a report."""
        names = {h.ref: h.name for h in self.hosts}
        out: dict[str, list[str]] = {h.name: [] for h in self.hosts}
        for v in self.vms:
            if v.running and v.resident_on in names:
                out[names[v.resident_on]].append(v.name)
        return {k: sorted(v) for k, v in out.items()}


class TaskStatus(StrEnum):
    PENDING = "pending"
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class TaskInfo:
    ref: str
    status: TaskStatus
    progress: float
    error: tuple[str, ...] = field(default=())


@runtime_checkable
class PoolDriver(Protocol):
    """The operations remediation needs from a hypervisor pool.

    Implementations translate their transport's failures into :mod:`poolwarden.errors`.
    Calls block; async callers run them in a worker thread.
    """

    def snapshot(self, evacuating: str | None = None) -> PoolSnapshot:
        """Read the pool; with ``evacuating`` (a host ref) fill ``VMState.blocked``."""
        ...

    def designate_master(self, host: str) -> None: ...

    def disable_host(self, host: str) -> None:
        """Stop new VMs landing on ``host`` and mark it as in maintenance."""
        ...

    def enable_host(self, host: str) -> None: ...

    def start_migration(self, vm: str, target: str) -> str:
        """Start a live migration; returns a task ref to follow with :meth:`task`."""
        ...

    def task(self, ref: str) -> TaskInfo: ...

    def forget_task(self, ref: str) -> None: ...

    def shutdown_host(self, host: str) -> None: ...

    def vm_host(self, vm: str) -> str | None:
        """The host ref a VM occupies (running or paused); None if it runs nowhere or is gone."""
        ...

    def cpu_features(self) -> dict[str, str]:
        """host name → CPU feature key, for pool CPU levelling."""
        ...

    def close(self) -> None: ...
