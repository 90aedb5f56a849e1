"""Live migration (VM.pool_migrate), its checks, Async tasks and concurrency."""

from __future__ import annotations

import threading
import time

import pytest
import XenAPI

GIB = 1024**3
LIVE = {"live": "true"}



def test_pool_migrate_moves_the_vm_and_its_memory(lab, connect, refs):
    session = connect(lab)
    hosts, vms = refs(session)
    vm, source, target = vms["web-01"], hosts["xstest2"], hosts["xstest1"]
    need = int(session.xenapi.VM.get_memory_static_max(vm)) + int(
        session.xenapi.VM.get_memory_overhead(vm))
    free_source = int(session.xenapi.host.compute_free_memory(source))
    free_target = int(session.xenapi.host.compute_free_memory(target))

    assert session.xenapi.VM.pool_migrate(vm, target, LIVE) == ""

    assert session.xenapi.VM.get_resident_on(vm) == target
    assert vm in session.xenapi.host.get_resident_VMs(target)
    assert vm not in session.xenapi.host.get_resident_VMs(source)
    assert int(session.xenapi.host.compute_free_memory(source)) == free_source + need
    assert int(session.xenapi.host.compute_free_memory(target)) == free_target - need
    assert session.xenapi.VM.get_current_operations(vm) == {}
    assert session.xenapi.VM.get_scheduled_to_be_resident_on(vm) == "OpaqueRef:NULL"
    assert lab.sim.layout()["xstest1"] == ["TST-ubuntu12-1", "web-01"]
    [record] = lab.sim.migrations
    assert (record.vm, record.source, record.target) == ("web-01", "xstest2", "xstest1")
    assert record.finished >= record.started


def test_migration_takes_time_in_proportion_to_memory(make_lab, connect, refs):
    lab = make_lab(migration_speed_gib_per_s=64)  # 16 GiB → 0.25 s
    session = connect(lab)
    hosts, vms = refs(session)
    started = time.monotonic()
    session.xenapi.VM.pool_migrate(vms["build-agent"], hosts["xstest1"], LIVE)
    assert 0.24 <= time.monotonic() - started < 2.0


def test_not_enough_free_memory_reports_needed_and_available(make_lab, connect, refs):
    lab = make_lab({
        "pool": {"master": "a"},
        "hosts": [{"name": "a", "memory_gib": 16}, {"name": "b", "memory_gib": 16}],
        "vms": [{"name": "big", "memory_gib": 12, "host": "a"},
                {"name": "filler", "memory_gib": 8, "host": "b"}],
    })
    session = connect(lab)
    hosts, vms = refs(session)
    need = int(session.xenapi.VM.get_memory_static_max(vms["big"])) + int(
        session.xenapi.VM.get_memory_overhead(vms["big"]))
    available = session.xenapi.host.compute_free_memory(hosts["b"])
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.VM.pool_migrate(vms["big"], hosts["b"], LIVE)
    assert failure.value.details == ["HOST_NOT_ENOUGH_FREE_MEMORY", str(need), available]
    assert lab.sim.layout() == {"a": ["big"], "b": ["filler"]}


def test_local_storage_vm_requires_its_sr(lab, connect, refs):
    session = connect(lab)
    hosts, vms = refs(session)
    vm = vms["db-local"]
    vdi = session.xenapi.VBD.get_VDI(session.xenapi.VM.get_VBDs(vm)[0])
    sr = session.xenapi.VDI.get_SR(vdi)
    assert session.xenapi.SR.get_shared(sr) is False
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.VM.pool_migrate(vm, hosts["xstest3"], LIVE)
    assert failure.value.details == ["VM_REQUIRES_SR", vm, sr]
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.VM.assert_can_boot_here(vm, hosts["xstest3"])
    assert failure.value.details[0] == "VM_REQUIRES_SR"


def test_disabled_target_and_bad_power_state(lab, connect, refs):
    session = connect(lab)
    hosts, vms = refs(session)
    session.xenapi.host.disable(hosts["xstest3"])
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.VM.pool_migrate(vms["web-01"], hosts["xstest3"], LIVE)
    assert failure.value.details == ["HOST_DISABLED", hosts["xstest3"]]
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.VM.pool_migrate(vms["win-template-builder"], hosts["xstest2"], LIVE)
    assert failure.value.details == [
        "VM_BAD_POWER_STATE", vms["win-template-builder"], "paused, running", "halted",
    ]
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.VM.pool_migrate(vms["web-01"], hosts["xstest2"], LIVE)
    assert failure.value.details[0] == "OPERATION_NOT_ALLOWED"  # already there
    assert lab.sim.migrations == []


def test_cpu_features_must_be_offered_by_the_target(make_lab, connect, refs):
    lab = make_lab({
        "pool": {"master": "new1"},
        "hosts": [{"name": "new1", "memory_gib": 32, "cpu_features": "ffffffff-ffffffff"},
                  {"name": "new2", "memory_gib": 32, "cpu_features": "ffffffff-ffffffff"},
                  {"name": "old", "memory_gib": 32, "cpu_features": "0000ffff-ffffffff"}],
        "vms": [{"name": "fresh", "memory_gib": 2, "host": "new1",
                 "cpu_features": "ffffffff-ffffffff"},
                {"name": "levelled", "memory_gib": 2, "host": "new1"}],
    })
    session = connect(lab)
    hosts, vms = refs(session)
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.VM.pool_migrate(vms["fresh"], hosts["old"], LIVE)
    assert failure.value.details[:3] == [
        "VM_INCOMPATIBLE_WITH_THIS_HOST", vms["fresh"], hosts["old"],
    ]
    session.xenapi.VM.pool_migrate(vms["fresh"], hosts["new2"], LIVE)
    # a VM booted with the pool level (the default) runs anywhere
    assert session.xenapi.VM.get_last_boot_CPU_flags(vms["levelled"])["features"] == (
        "0000ffff-ffffffff")
    session.xenapi.VM.pool_migrate(vms["levelled"], hosts["old"], LIVE)
    assert lab.sim.layout() == {"new1": [], "new2": ["fresh"], "old": ["levelled"]}


def test_async_migration_task_lifecycle(make_lab, connect, wait_task, refs):
    lab = make_lab(migration_speed_gib_per_s=16)  # 8 GiB → 0.5 s
    session = connect(lab)
    hosts, vms = refs(session)
    vm = vms["web-01"]
    task = session.xenapi.Async.VM.pool_migrate(vm, hosts["xstest3"], LIVE)
    assert task.startswith("OpaqueRef:")
    seen_progress, seen_ops = set(), []
    while (status := session.xenapi.task.get_status(task)) == "pending":
        seen_progress.add(float(session.xenapi.task.get_progress(task)))
        seen_ops.append(session.xenapi.VM.get_current_operations(vm))
        time.sleep(0.02)
    assert status == "success"
    assert any(0.0 < p < 1.0 for p in seen_progress)
    assert {task: "pool_migrate"} in seen_ops
    record = session.xenapi.task.get_record(task)
    assert record["progress"] == 1.0
    assert record["result"] == ""
    assert record["error_info"] == []
    assert record["name_label"] == "Async.VM.pool_migrate"
    assert session.xenapi.task.get_result(task) == ""
    session.xenapi.task.destroy(task)
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.task.get_record(task)
    assert failure.value.details == ["HANDLE_INVALID", "task", task]
    assert lab.sim.layout()["xstest3"] == ["build-agent", "web-01", "web-02"]
    # a failing Async call fails its task, not the call
    session.xenapi.host.disable(hosts["xstest1"])
    task = session.xenapi.Async.VM.pool_migrate(vms["web-02"], hosts["xstest1"], LIVE)
    record = wait_task(session, task)
    assert record["status"] == "failure"
    assert record["error_info"] == ["HOST_DISABLED", hosts["xstest1"]]
    assert session.xenapi.task.get_error_info(task) == ["HOST_DISABLED", hosts["xstest1"]]


def test_second_migration_of_a_migrating_vm_is_refused(make_lab, connect, wait_task, refs):
    lab = make_lab(migration_speed_gib_per_s=8)  # 4 GiB → 0.5 s
    session = connect(lab)
    hosts, vms = refs(session)
    vm = vms["TST-ubuntu12-2"]
    tasks = [session.xenapi.Async.VM.pool_migrate(vm, hosts[h], LIVE)
             for h in ("xstest1", "xstest3")]
    records = [wait_task(session, t) for t in tasks]
    assert sorted(r["status"] for r in records) == ["failure", "success"]
    ok = next(t for t, r in zip(tasks, records, strict=True) if r["status"] == "success")
    failed = next(r for r in records if r["status"] == "failure")
    assert failed["error_info"] == ["OTHER_OPERATION_IN_PROGRESS", "VM", vm, "pool_migrate", ok]
    assert len(lab.sim.migrations) == 1


def test_shutdown_during_migration_and_start(make_lab, connect, wait_task, wait_for, refs):
    lab = make_lab(migration_speed_gib_per_s=8)
    session = connect(lab)
    hosts, vms = refs(session)
    vm = vms["TST-ubuntu12-1"]
    task = session.xenapi.Async.VM.pool_migrate(vm, hosts["xstest2"], LIVE)
    wait_for(lambda: session.xenapi.VM.get_current_operations(vm) != {})
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.VM.clean_shutdown(vm)
    assert failure.value.details == ["OTHER_OPERATION_IN_PROGRESS", "VM", vm, "pool_migrate", task]
    assert wait_task(session, task)["status"] == "success"

    session.xenapi.VM.clean_shutdown(vm)
    assert session.xenapi.VM.get_power_state(vm) == "Halted"
    assert session.xenapi.VM.get_resident_on(vm) == "OpaqueRef:NULL"
    assert vm not in session.xenapi.host.get_resident_VMs(hosts["xstest2"])
    session.xenapi.VM.start(vm, False, False)
    assert session.xenapi.VM.get_power_state(vm) == "Running"
    assert session.xenapi.VM.get_resident_on(vm) == hosts["xstest1"]  # its affinity


def test_sync_migrations_from_many_clients(lab, connect, refs):
    """Concurrent clients migrating different VMs all succeed, each exactly once."""
    hosts, vms = refs(connect(lab))
    moves = {"web-01": "xstest1", "web-02": "xstest1", "TST-ubuntu12-2": "xstest3"}
    errors = []

    def move(name, target):
        try:
            connect(lab).xenapi.VM.pool_migrate(vms[name], hosts[target], LIVE)
        except XenAPI.Failure as exc:  # pragma: no cover - reported below
            errors.append(exc.details)

    threads = [threading.Thread(target=move, args=m) for m in moves.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted((m.vm, m.target) for m in lab.sim.migrations) == sorted(moves.items())
