"""Where a VM may run: free memory, the checks of ``assert_can_boot_here``, evacuation plans.

Pure functions over the :class:`~poolwarden.lab.xapi.db.Database`; callers hold its lock.
They follow xapi (``xapi_vm_helpers.assert_can_boot_here``,
``xapi_host.compute_evacuation_plan_no_wlb``) and the memory conventions of
:mod:`poolwarden.hypervisor.base`.
"""

from __future__ import annotations

from collections.abc import Iterable

from poolwarden.lab.xapi.datamodel import NULL_REF
from poolwarden.lab.xapi.db import Database
from poolwarden.lab.xapi.failure import XapiFailure

OCCUPYING = ("Running", "Paused")
INCOMPATIBLE_REASON = "VM last booted on a CPU with features this host's CPU does not have."

# -- CPU features ----------------------------------------------------------------------


def parse_features(key: str) -> list[int]:
    return [int(word, 16) for word in key.split("-")] if key else []


def format_features(words: Iterable[int]) -> str:
    return "-".join(f"{w:08x}" for w in words)


def level_features(keys: Iterable[str]) -> str:
    """The pool level: word-wise AND, the shorter key zero-extended (so its tail is 0)."""
    parsed = [parse_features(k) for k in keys]
    if not parsed:
        return ""
    width = max(len(p) for p in parsed)
    out = [0xFFFFFFFF] * width
    for words in parsed:
        padded = words + [0] * (width - len(words))
        out = [a & b for a, b in zip(out, padded, strict=True)]
    return format_features(out)


def features_subset(vm_key: str, host_key: str) -> bool:
    """True when the host offers every feature the VM booted with."""
    vm, host = parse_features(vm_key), parse_features(host_key)
    host += [0] * (len(vm) - len(host))
    return all(v & ~h == 0 for v, h in zip(vm, host, strict=False))


# -- memory ----------------------------------------------------------------------------


def vm_need(db: Database, vm: str) -> int:
    """Bytes a host must have free for this VM: ``memory_static_max + memory_overhead``."""
    return int(db.get("VM", vm, "memory_static_max")) + int(db.get("VM", vm, "memory_overhead"))


def occupies(db: Database, vm: str, host: str) -> bool:
    """The VM holds memory on ``host``: it runs there, or it is migrating there."""
    if db.get("VM", vm, "scheduled_to_be_resident_on") == host:
        return True
    return (
        db.get("VM", vm, "resident_on") == host
        and db.get("VM", vm, "power_state") in OCCUPYING
    )


def free_memory(db: Database, host: str) -> int:
    """``host.compute_free_memory``: total − host overhead − Σ needs of occupying VMs."""
    metrics = db.get("host", host, "metrics")
    total = int(db.get("host_metrics", metrics, "memory_total"))
    used = int(db.get("host", host, "memory_overhead"))
    used += sum(vm_need(db, vm) for vm in db.refs("VM") if occupies(db, vm, host))
    return total - used


def refresh_free(db: Database, *hosts: str) -> None:
    """Keep ``host_metrics.memory_free`` equal to what compute_free_memory says."""
    for host in hosts:
        if host == NULL_REF or not db.exists("host", host):
            continue
        metrics = db.get("host", host, "metrics")
        free = free_memory(db, host)
        if db.get("host_metrics", metrics, "memory_free") != free:
            db.set("host_metrics", metrics, memory_free=free)


def host_live(db: Database, host: str) -> bool:
    return bool(db.get("host_metrics", db.get("host", host, "metrics"), "live"))


# -- placement checks ------------------------------------------------------------------


def _required_srs(db: Database, vm: str) -> list[str]:
    srs = []
    for vbd in db.get("VM", vm, "VBDs"):
        vdi = db.get("VBD", vbd, "VDI")
        if vdi != NULL_REF and not db.get("VBD", vbd, "empty"):
            srs.append(db.get("VDI", vdi, "SR"))
    return srs


def _sr_visible(db: Database, sr: str, host: str) -> bool:
    return any(
        db.get("PBD", pbd, "host") == host and db.get("PBD", pbd, "currently_attached")
        for pbd in db.get("SR", sr, "PBDs")
    )


def boot_error(db: Database, vm: str, host: str, *, memory: bool = True) -> XapiFailure | None:
    """Why ``vm`` cannot run on ``host`` (first reason, in xapi's order), or None."""
    if not host_live(db, host):
        return XapiFailure("HOST_OFFLINE", host)
    if not db.get("host", host, "enabled"):
        return XapiFailure("HOST_DISABLED", host)
    if "evacuate" in db.get("host", host, "current_operations").values():
        return XapiFailure("HOST_EVACUATE_IN_PROGRESS", host)
    for sr in _required_srs(db, vm):
        if not _sr_visible(db, sr, host):
            return XapiFailure("VM_REQUIRES_SR", vm, sr)
    booted = db.get("VM", vm, "last_boot_CPU_flags").get("features", "")
    offered = db.get("host", host, "cpu_info").get("features_hvm", "")
    if db.get("VM", vm, "power_state") in OCCUPYING and not features_subset(booted, offered):
        return XapiFailure("VM_INCOMPATIBLE_WITH_THIS_HOST", vm, host, INCOMPATIBLE_REASON)
    if memory:
        needed, available = vm_need(db, vm), free_memory(db, host)
        if needed > available:
            return XapiFailure("HOST_NOT_ENOUGH_FREE_MEMORY", needed, available)
    return None


def busy_error(db: Database, cls: str, ref: str) -> XapiFailure | None:
    """OTHER_OPERATION_IN_PROGRESS [class, ref, op, op ref] when an operation runs on it."""
    current = db.get(cls, ref, "current_operations")
    if not current:
        return None
    op_ref, op = next(iter(current.items()))
    return XapiFailure("OTHER_OPERATION_IN_PROGRESS", cls, ref, op, op_ref)


def guests_on(db: Database, host: str) -> list[str]:
    """Non-control-domain VMs resident on ``host``, ordered by name for determinism."""
    vms = [
        v for v in db.get("host", host, "resident_VMs")
        if not db.get("VM", v, "is_control_domain")
    ]
    return sorted(vms, key=lambda v: str(db.get("VM", v, "name_label")))


def evacuation_plan(db: Database, host: str) -> tuple[dict[str, str], dict[str, XapiFailure]]:
    """(vm → target host, vm → why it cannot move), as xapi's evacuation planner.

    Targets are the other enabled, live hosts; a VM must be able to boot on every one of
    them (storage, CPU) to be packed at all; VMs are packed by memory, biggest first, each
    onto the target with the most free memory; each placement is checked once more.
    """
    targets = sorted(
        (h for h in db.refs("host")
         if h != host and db.get("host", h, "enabled") and host_live(db, h)),
        key=lambda h: str(db.get("host", h, "name_label")),
    )
    vms = guests_on(db, host)
    errors: dict[str, XapiFailure] = {}
    if not targets:
        return {}, {vm: XapiFailure("NO_HOSTS_AVAILABLE", vm) for vm in vms}
    for vm in vms:
        err = busy_error(db, "VM", vm)
        for target in targets:
            err = err or boot_error(db, vm, target, memory=False)
        if err:
            errors[vm] = err
    free = {t: free_memory(db, t) for t in targets}
    plan: dict[str, str] = {}
    for vm in sorted((v for v in vms if v not in errors), key=lambda v: -vm_need(db, v)):
        best = max(targets, key=lambda t: free[t])
        if free[best] < vm_need(db, vm):
            errors[vm] = XapiFailure("HOST_NOT_ENOUGH_FREE_MEMORY", vm)
            continue
        free[best] -= vm_need(db, vm)
        plan[vm] = best
    for vm, target in list(plan.items()):
        err = boot_error(db, vm, target, memory=False)
        if err:
            errors[vm] = err
            del plan[vm]
    order = {vm: i for i, vm in enumerate(vms)}
    return plan, dict(sorted(errors.items(), key=lambda kv: order[kv[0]]))
