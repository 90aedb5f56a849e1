"""host.evacuate and its pre-checks, host shutdown/reboot, and the port of a dead host."""

from __future__ import annotations

import pytest
import XenAPI

NULL = "OpaqueRef:NULL"



def test_evacuate_moves_every_guest_off_the_host(lab, connect, refs):
    session = connect(lab)
    hosts, _ = refs(session)
    before = lab.sim.layout()
    assert before["xstest3"] == ["build-agent", "web-02"]
    assert session.xenapi.host.get_vms_which_prevent_evacuation(hosts["xstest3"]) == {}
    assert session.xenapi.host.assert_can_evacuate(hosts["xstest3"]) == ""

    session.xenapi.host.disable(hosts["xstest3"])
    session.xenapi.host.evacuate(hosts["xstest3"])  # the original one-argument form

    after = lab.sim.layout()
    assert after["xstest3"] == []
    moved = sorted(after["xstest1"] + after["xstest2"])
    assert moved == sorted(before["xstest1"] + before["xstest2"] + before["xstest3"])
    assert sorted(m.vm for m in lab.sim.migrations) == ["build-agent", "web-02"]
    assert {m.source for m in lab.sim.migrations} == {"xstest3"}
    dom0 = session.xenapi.host.get_control_domain(hosts["xstest3"])
    assert session.xenapi.host.get_resident_VMs(hosts["xstest3"]) == [dom0]
    assert session.xenapi.host.get_enabled(hosts["xstest3"]) is False  # evacuate does not enable
    assert session.xenapi.host.get_current_operations(hosts["xstest3"]) == {}


def test_evacuate_refused_for_an_anchored_vm_changes_nothing(lab, connect, refs):
    session = connect(lab)
    hosts, vms = refs(session)
    host, vm = hosts["xstest2"], vms["db-local"]
    sr = session.xenapi.VDI.get_SR(session.xenapi.VBD.get_VDI(session.xenapi.VM.get_VBDs(vm)[0]))
    before = lab.sim.layout()

    assert session.xenapi.host.get_vms_which_prevent_evacuation(host) == {
        vm: ["VM_REQUIRES_SR", vm, sr],
    }
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.host.assert_can_evacuate(host)
    assert failure.value.details == ["CANNOT_EVACUATE_HOST", f"VM_REQUIRES_SR,{vm},{sr}"]
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.host.evacuate(host, NULL, "0")
    assert failure.value.details == ["VM_REQUIRES_SR", vm, sr]

    assert lab.sim.layout() == before
    assert lab.sim.migrations == []
    # once the anchored VM is shut down, the rest can go
    session.xenapi.VM.hard_shutdown(vm)
    session.xenapi.host.evacuate(host, NULL)
    assert lab.sim.layout()["xstest2"] == []


def test_evacuate_refused_when_capacity_is_short(make_lab, connect, refs):
    lab = make_lab({
        "pool": {"master": "a"},
        "hosts": [{"name": "a", "memory_gib": 16}, {"name": "b", "memory_gib": 16}],
        "vms": [{"name": "va", "memory_gib": 10, "host": "a"},
                {"name": "vb", "memory_gib": 10, "host": "b"}],
    })
    session = connect(lab)
    hosts, vms = refs(session)
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.host.evacuate(hosts["a"], NULL, "0")
    assert failure.value.details == ["HOST_NOT_ENOUGH_FREE_MEMORY", vms["va"]]
    assert lab.sim.layout() == {"a": ["va"], "b": ["vb"]}
    assert lab.sim.migrations == []
    # no other enabled host at all
    session.xenapi.host.disable(hosts["b"])
    assert session.xenapi.host.get_vms_which_prevent_evacuation(hosts["a"]) == {
        vms["va"]: ["NO_HOSTS_AVAILABLE", vms["va"]],
    }


def test_evacuate_in_batches_and_concurrent_evacuate(make_lab, connect, wait_task, wait_for, refs):
    lab = make_lab(migration_speed_gib_per_s=32)  # 8 GiB: 0.25 s, 16 GiB: 0.5 s
    session = connect(lab)
    hosts, _ = refs(session)
    host = hosts["xstest3"]
    task = session.xenapi.Async.host.evacuate(host, NULL, "1")
    wait_for(lambda: session.xenapi.host.get_current_operations(host) != {})
    assert session.xenapi.host.get_current_operations(host) == {task: "evacuate"}
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.host.evacuate(host)
    assert failure.value.details == ["OTHER_OPERATION_IN_PROGRESS", "host", host, "evacuate", task]
    with pytest.raises(XenAPI.Failure) as failure:  # no VM may land on an evacuating host
        session.xenapi.VM.pool_migrate(
            session.xenapi.VM.get_by_name_label("web-01")[0], host, {"live": "true"})
    assert failure.value.details == ["HOST_EVACUATE_IN_PROGRESS", host]
    record = wait_task(session, task)
    assert record["status"] == "success", record["error_info"]
    first, second = sorted(lab.sim.migrations, key=lambda m: m.started)
    assert second.started >= first.finished  # batch size 1: one after the other


def test_shutdown_requires_disabled_and_empty_host(lab, connect, wait_for, refs):
    session = connect(lab)
    hosts, vms = refs(session)
    host = hosts["xstest3"]
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.host.shutdown(host)
    assert failure.value.details == ["HOST_NOT_DISABLED"]
    session.xenapi.host.disable(host)
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.host.shutdown(host)
    assert failure.value.details == ["HOST_IN_USE", host, "vm", vms["build-agent"]]

    session.xenapi.host.evacuate(host)
    session.xenapi.host.shutdown(host)

    metrics = session.xenapi.host.get_metrics(host)
    assert session.xenapi.host_metrics.get_live(metrics) is False
    assert lab.sim.hosts()["xstest3"].live is False

    def port_closed():
        try:
            connect(lab, host="xstest3", login=False).xenapi.login_with_password("root", "lab")
        except ConnectionError:
            return True
        except XenAPI.Failure:
            return False
        return False

    wait_for(port_closed, timeout=3)
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.host.enable(host)
    assert failure.value.details == ["HOST_OFFLINE", host]
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.VM.pool_migrate(vms["web-01"], host, {"live": "true"})
    assert failure.value.details == ["HOST_OFFLINE", host]

    lab.power_on("xstest3")
    assert lab.sim.hosts()["xstest3"].live is True
    with pytest.raises(XenAPI.Failure) as failure:  # the port answers again
        connect(lab, host="xstest3")
    assert failure.value.details[0] == "HOST_IS_SLAVE"


def test_reboot_keeps_the_host_disabled_without_auto_enable(lab, connect, wait_for, refs):
    lab.sim.reboot_seconds = 0.1
    session = connect(lab)
    hosts, _ = refs(session)
    host = hosts["xstest3"]
    session.xenapi.host.disable(host, False)  # auto_enable=False (XAPI 25.31.0)
    session.xenapi.host.evacuate(host)
    session.xenapi.host.reboot(host)
    assert lab.sim.hosts()["xstest3"].live is False
    wait_for(lambda: lab.sim.hosts()["xstest3"].live, timeout=3)
    assert lab.sim.hosts()["xstest3"].enabled is False
    session.xenapi.host.enable(host)
    assert lab.sim.hosts()["xstest3"].enabled is True
