"""Host maintenance: enable/disable, evacuation (plan, checks, batched live migrations),
free memory, CPU info, shutdown and reboot."""

from __future__ import annotations

from functools import partial

from poolwarden.lab.xapi.datamodel import NULL_REF
from poolwarden.lab.xapi.failure import XapiFailure
from poolwarden.lab.xapi.handlers_vm import begin_migration
from poolwarden.lab.xapi.placement import (
    busy_error,
    evacuation_plan,
    free_memory,
    guests_on,
    host_live,
)
from poolwarden.lab.xapi.registry import Call, Job, handler
from poolwarden.lab.xapi.sim import Simulator

#: xapi.conf's evacuation-batch-size default
DEFAULT_BATCH = 10


@handler("host", "enable")
def enable(call: Call, host: str) -> None:
    if not host_live(call.sim.db, host):
        raise XapiFailure("HOST_OFFLINE", host)
    call.sim.db.set("host", host, enabled=True)
    call.sim.auto_enable.pop(host, None)


@handler("host", "disable")
def disable(call: Call, host: str, auto_enable: bool = True) -> None:
    """Only flips ``enabled``: running VMs stay. ``auto_enable`` matters at the next boot."""
    call.sim.db.set("host", host, enabled=False)
    call.sim.auto_enable[host] = auto_enable


@handler("host", "compute_free_memory")
def compute_free_memory(call: Call, host: str) -> int:
    return free_memory(call.sim.db, host)


@handler("host", "compute_memory_overhead")
def compute_memory_overhead(call: Call, host: str) -> int:
    return int(call.sim.db.get("host", host, "memory_overhead"))


@handler("host", "get_cpu_info")
def get_cpu_info(call: Call, host: str) -> dict[str, str]:
    return dict(call.sim.db.get("host", host, "cpu_info"))


@handler("host", "get_vms_which_prevent_evacuation")
def get_vms_which_prevent_evacuation(call: Call, host: str) -> dict[str, list[str]]:
    _, errors = evacuation_plan(call.sim.db, host)
    return {vm: err.description for vm, err in errors.items()}


@handler("host", "assert_can_evacuate")
def assert_can_evacuate(call: Call, host: str) -> None:
    _, errors = evacuation_plan(call.sim.db, host)
    if errors:
        # why: xapi's old (Miami) encoding: "CODE,param,…|CODE,param,…" in one string.
        joined = "|".join(",".join(err.description) for err in errors.values())
        raise XapiFailure("CANNOT_EVACUATE_HOST", joined)


@handler("host", "evacuate")
def evacuate(
    call: Call, host: str, network: str = NULL_REF, evacuate_batch_size: int = 0,
) -> Job:
    """All or nothing: any VM that cannot move fails the call before anything moves."""
    db = call.sim.db
    busy = busy_error(db, "host", host)
    if busy:
        raise busy
    plan, errors = evacuation_plan(db, host)
    if errors:
        raise next(iter(errors.values()))
    op = call.op_ref()
    db.set("host", host, current_operations={op: "evacuate"})
    batch = evacuate_batch_size if evacuate_batch_size > 0 else DEFAULT_BATCH
    return Job(partial(_evacuate, call.sim, host, list(plan.items()), batch, op))


def _run_job(job: Job, failures: list[XapiFailure]) -> None:
    try:
        job.run()
    except XapiFailure as failure:
        failures.append(failure)


def _evacuate(
    sim: Simulator, host: str, plan: list[tuple[str, str]], batch: int, op: str,
) -> None:
    """Migrate ``batch`` VMs at a time in parallel, each under a subtask of ``op``."""
    db = sim.db
    try:
        for first in range(0, len(plan), batch):
            chunk, jobs, failures = plan[first : first + batch], [], []
            with db.lock:
                for vm, target in chunk:
                    sub = sim.new_task("VM.pool_migrate")
                    db.set("task", sub, subtask_of=op)
                    try:
                        jobs.append((sub, begin_migration(sim, vm, target, sub)))
                    except XapiFailure as failure:
                        db.destroy("task", sub)
                        # why: xapi skips VMs that were shut down since the plan was made.
                        if failure.code != "VM_BAD_POWER_STATE":
                            failures.append(failure)
            threads = [sim.spawn(partial(_run_job, job, failures), "lab-evacuate-vm")
                       for _, job in jobs]
            for thread in threads:
                thread.join()
            with db.lock:
                for sub, _ in jobs:
                    if db.exists("task", sub):
                        db.destroy("task", sub)
            sim.set_progress(op, (first + len(chunk)) / len(plan))
            if failures:
                raise failures[0]
        with db.lock:
            left = [vm for vm in guests_on(db, host)
                    if db.get("VM", vm, "power_state") == "Running"]
            if left:
                raise XapiFailure("INTERNAL_ERROR",
                                  f"evacuate: {len(left)} VMs are still resident on {host}")
    finally:
        with db.lock:
            ops = db.get("host", host, "current_operations")
            db.set("host", host, current_operations={k: v for k, v in ops.items() if k != op})


def _power_off(call: Call, host: str, *, reboot: bool) -> None:
    """xapi's ``assert_bacon_mode``: disabled, and no guest running on the host."""
    sim, db = call.sim, call.sim.db
    if db.get("host", host, "enabled"):
        raise XapiFailure("HOST_NOT_DISABLED")
    for vm in guests_on(db, host):
        if db.get("VM", vm, "power_state") == "Running":
            raise XapiFailure("HOST_IN_USE", host, "vm", vm)
    busy = busy_error(db, "host", host)
    if busy:
        raise busy
    name = sim.host_name(host)
    sim.set_live(name, False)
    if sim.on_host_down is not None:
        # why: the Lab closes the host's port (and reopens it after a reboot).
        sim.on_host_down(name, sim.reboot_seconds if reboot else None)


@handler("host", "shutdown")
def shutdown(call: Call, host: str) -> None:
    _power_off(call, host, reboot=False)


@handler("host", "reboot")
def reboot(call: Call, host: str) -> None:
    _power_off(call, host, reboot=True)
