"""VM power and live migration: pool_migrate takes simulated time, start/shutdown too.

A migration reserves the VM's memory on the target at its start (the VM's
``scheduled_to_be_resident_on``, which compute_free_memory counts), moves the VM when
its time is up and logs it in :attr:`Simulator.migrations`.
"""

from __future__ import annotations

import math
import time
from functools import partial

from poolwarden.lab.xapi.build import allowed_vm_operations
from poolwarden.lab.xapi.datamodel import NULL_REF
from poolwarden.lab.xapi.db import Database
from poolwarden.lab.xapi.failure import XapiFailure, now
from poolwarden.lab.xapi.memory import GIB
from poolwarden.lab.xapi.placement import (
    OCCUPYING,
    boot_error,
    busy_error,
    level_features,
    refresh_free,
)
from poolwarden.lab.xapi.registry import Call, Job, handler
from poolwarden.lab.xapi.sim import Simulator

#: Seconds between progress updates of a running migration.
PROGRESS_STEP = 0.05


def _bad_power(vm: str, expected: str, state: str) -> XapiFailure:
    return XapiFailure("VM_BAD_POWER_STATE", vm, expected, state.lower())


def _guard(db: Database, vm: str, op: str) -> None:
    """Checks every VM operation starts with, in xapi's order."""
    if db.get("VM", vm, "is_a_template"):
        raise XapiFailure("VM_IS_TEMPLATE", vm)
    if db.get("VM", vm, "is_control_domain"):
        raise XapiFailure("OPERATION_NOT_ALLOWED", f"{op} is not allowed on a control domain")
    busy = busy_error(db, "VM", vm)
    if busy:
        raise busy


def _end_op(db: Database, vm: str, **changes: object) -> None:
    """Clear the VM's current operation, applying ``changes`` in the same event."""
    state = str(changes.get("power_state", db.get("VM", vm, "power_state")))
    db.set("VM", vm, current_operations={}, allowed_operations=allowed_vm_operations(state),
           **changes)


def _move_resident(db: Database, vm: str, source: str, target: str) -> None:
    """Keep ``host.resident_VMs`` in step with ``VM.resident_on``."""
    if source != NULL_REF:
        db.set("host", source,
               resident_VMs=[v for v in db.get("host", source, "resident_VMs") if v != vm])
    if target != NULL_REF:
        db.set("host", target, resident_VMs=[*db.get("host", target, "resident_VMs"), vm])


def begin_migration(sim: Simulator, vm: str, target: str, op: str) -> Job:
    """Prechecks and memory reservation (lock held); the job does the move."""
    db = sim.db
    _guard(db, vm, "pool_migrate")
    state = str(db.get("VM", vm, "power_state"))
    if state not in OCCUPYING:
        raise _bad_power(vm, "paused, running", state)
    source = db.get("VM", vm, "resident_on")
    if target == source:
        raise XapiFailure("OPERATION_NOT_ALLOWED", "the VM is already resident on that host")
    err = boot_error(db, vm, target)
    if err:
        raise err
    db.set("VM", vm, current_operations={op: "pool_migrate"}, allowed_operations=[],
           scheduled_to_be_resident_on=target)
    refresh_free(db, target)
    return Job(partial(_migrate, sim, vm, source, target, op, time.time()))


def _migrate(sim: Simulator, vm: str, source: str, target: str, op: str, started: float) -> None:
    db = sim.db
    seconds = int(db.get("VM", vm, "memory_static_max")) / GIB / sim.speed_gib_per_s
    steps = max(1, min(20, math.ceil(seconds / PROGRESS_STEP)))
    try:
        for i in range(steps):
            sim.sleep(seconds / steps)
            sim.set_progress(op, 0.99 * (i + 1) / steps)
    except XapiFailure:
        with db.lock:
            _end_op(db, vm, scheduled_to_be_resident_on=NULL_REF)
            refresh_free(db, target)
        raise
    with db.lock:
        _end_op(db, vm, resident_on=target, scheduled_to_be_resident_on=NULL_REF,
                domid=len(db.get("host", target, "resident_VMs")))
        _move_resident(db, vm, source, target)
        refresh_free(db, source, target)
        sim.record_migration(sim.vm_name(vm), sim.host_name(source), sim.host_name(target),
                             started)


@handler("VM", "pool_migrate")
def pool_migrate(call: Call, vm: str, host: str, options: dict[str, str]) -> Job:
    return begin_migration(call.sim, vm, host, call.op_ref())


@handler("VM", "assert_can_boot_here")
def assert_can_boot_here(call: Call, vm: str, host: str) -> None:
    err = boot_error(call.sim.db, vm, host)
    if err:
        raise err


def _power_on(sim: Simulator, vm: str, host: str, paused: bool) -> None:
    db = sim.db
    level = level_features(
        db.get("host", h, "cpu_info").get("features_hvm", "") for h in db.refs("host")
    )
    state = "Paused" if paused else "Running"
    _end_op(db, vm, power_state=state, resident_on=host,
            domid=len(db.get("host", host, "resident_VMs")),
            last_boot_CPU_flags={"vendor": "GenuineIntel", "features": level})
    _move_resident(db, vm, NULL_REF, host)
    _set_running(db, vm, running=True)
    refresh_free(db, host)


def _set_running(db: Database, vm: str, *, running: bool) -> None:
    """Disks attached and memory in use while the VM runs."""
    for vbd in db.get("VM", vm, "VBDs"):
        db.set("VBD", vbd, currently_attached=running)
    memory = int(db.get("VM", vm, "memory_static_max")) if running else 0
    db.set("VM_metrics", db.get("VM", vm, "metrics"), memory_actual=memory, start_time=now())


def _assert_halted(db: Database, vm: str) -> None:
    _guard(db, vm, "start")
    state = str(db.get("VM", vm, "power_state"))
    if state != "Halted":
        raise _bad_power(vm, "halted", state)


@handler("VM", "start")
def start(call: Call, vm: str, start_paused: bool = False, force: bool = False) -> None:
    """Start on the VM's affinity host if it can run there, else on the first host that can."""
    db = call.sim.db
    _assert_halted(db, vm)
    affinity = db.get("VM", vm, "affinity")
    hosts = sorted(db.refs("host"), key=lambda h: (h != affinity, call.sim.host_name(h)))
    for host in hosts:
        if boot_error(db, vm, host) is None:
            _power_on(call.sim, vm, host, start_paused)
            return
    raise XapiFailure("NO_HOSTS_AVAILABLE")


@handler("VM", "start_on")
def start_on(call: Call, vm: str, host: str, start_paused: bool, force: bool) -> None:
    db = call.sim.db
    _assert_halted(db, vm)
    err = boot_error(db, vm, host)
    if err:
        raise err
    _power_on(call.sim, vm, host, start_paused)


def _begin_shutdown(call: Call, vm: str, op: str, seconds: float) -> Job:
    sim, db = call.sim, call.sim.db
    _guard(db, vm, op)
    state = str(db.get("VM", vm, "power_state"))
    if state not in OCCUPYING:
        raise _bad_power(vm, "paused, running", state)
    db.set("VM", vm, current_operations={call.op_ref(): op}, allowed_operations=[])
    return Job(partial(_shutdown, sim, vm, seconds))


def _shutdown(sim: Simulator, vm: str, seconds: float) -> None:
    db = sim.db
    try:
        sim.sleep(seconds)
    except XapiFailure:
        with db.lock:
            _end_op(db, vm)
        raise
    with db.lock:
        host = db.get("VM", vm, "resident_on")
        _end_op(db, vm, power_state="Halted", resident_on=NULL_REF, domid=-1)
        _move_resident(db, vm, host, NULL_REF)
        _set_running(db, vm, running=False)
        refresh_free(db, host)


@handler("VM", "clean_shutdown")
def clean_shutdown(call: Call, vm: str) -> Job:
    return _begin_shutdown(call, vm, "clean_shutdown", call.sim.shutdown_seconds)


@handler("VM", "shutdown")
def shutdown(call: Call, vm: str) -> Job:
    return _begin_shutdown(call, vm, "shutdown", call.sim.shutdown_seconds)


@handler("VM", "hard_shutdown")
def hard_shutdown(call: Call, vm: str) -> Job:
    return _begin_shutdown(call, vm, "hard_shutdown", call.sim.shutdown_seconds / 4)
