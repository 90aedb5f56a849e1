"""The wire protocol and generic API behaviour of the lab, through the official SDK."""

from __future__ import annotations

import time

import pytest
import XenAPI

from poolwarden.lab.xapi import datamodel


def test_login_logout_and_wrong_password(lab, connect):
    session = connect(lab)
    assert session.handle.startswith("OpaqueRef:")
    assert session.xenapi.pool.get_all()
    session.xenapi.session.logout()

    with pytest.raises(XenAPI.Failure) as failure:
        connect(lab, password="wrong")
    assert failure.value.details == [
        "SESSION_AUTHENTICATION_FAILED", "root", "Authentication failure",
    ]


def test_login_with_two_arguments_is_accepted(lab, connect):
    session = connect(lab, login=False)
    session.xenapi.login_with_password("root", "lab")
    assert len(session.xenapi.host.get_all()) == 3


def test_login_on_a_slave_names_the_master_address(lab, connect):
    master_address = lab.urls["xstest1"].removeprefix("http://")
    with pytest.raises(XenAPI.Failure) as failure:
        connect(lab, host="xstest2")
    assert failure.value.details == ["HOST_IS_SLAVE", master_address]
    # the address is where the host record says the master is
    session = connect(f"http://{master_address}")
    master = session.xenapi.pool.get_master(session.xenapi.pool.get_all()[0])
    assert session.xenapi.host.get_address(master) == master_address


def test_slave_local_login_works_on_any_host(lab, connect):
    session = connect(lab, host="xstest3", login=False)
    session.slave_local_login_with_password("root", "lab")
    assert len(session.xenapi.VM.get_all()) >= 6


def test_session_invalid_after_logout(lab, connect):
    session = connect(lab)
    handle = session.handle
    session.xenapi.session.logout()
    # the raw proxy shows what the server answers (the SDK would try to log in again)
    raw = connect(lab, login=False)
    assert raw.host.get_all(handle) == {
        "Status": "Failure", "ErrorDescription": ["SESSION_INVALID", handle],
    }


def test_idle_sessions_expire(make_lab, connect):
    lab = make_lab(session_timeout_s=0.2)
    session = connect(lab)
    handle = session.handle
    session.xenapi.host.get_all()
    time.sleep(0.3)
    raw = connect(lab, login=False)
    assert raw.host.get_all(handle)["ErrorDescription"] == ["SESSION_INVALID", handle]
    # the SDK logs in again by itself on SESSION_INVALID
    assert len(session.xenapi.host.get_all()) == 3
    assert session.handle != handle


def test_handle_invalid_for_unknown_and_wrong_class_refs(lab, connect):
    session = connect(lab)
    vm = session.xenapi.VM.get_by_name_label("web-01")[0]
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.host.get_record(vm)
    assert failure.value.details == ["HANDLE_INVALID", "host", vm]
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.VM.get_record("OpaqueRef:no-such-thing")
    assert failure.value.details == ["HANDLE_INVALID", "VM", "OpaqueRef:no-such-thing"]
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.VM.get_by_uuid("00000000-0000-0000-0000-000000000000")
    assert failure.value.details[0] == "UUID_INVALID"


def test_unknown_methods_and_parameter_counts(lab, connect):
    session = connect(lab)
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.host.levitate()
    assert failure.value.details == ["MESSAGE_METHOD_UNKNOWN", "host.levitate"]
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.Async.host.get_record("x")  # implicit messages have no Async form
    assert failure.value.details[0] == "MESSAGE_METHOD_UNKNOWN"
    host = session.xenapi.host.get_all()[0]
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.host.get_record(host, "extra")
    # counts include the session argument, as xapi reports them
    assert failure.value.details == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH", "host.get_record", "2", "3",
    ]
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.VM.pool_migrate(host)
    assert failure.value.details == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.pool_migrate", "4", "2",
    ]


def test_known_but_unsimulated_methods_say_not_implemented(lab, connect):
    session = connect(lab)
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.VM.clone(session.xenapi.VM.get_by_name_label("web-01")[0], "copy")
    assert failure.value.details == ["NOT_IMPLEMENTED", "VM.clone"]


def test_argument_types_are_checked(lab, connect):
    session = connect(lab)
    host = session.xenapi.host.get_all()[0]
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.host.evacuate(host, "OpaqueRef:NULL", "many")
    assert failure.value.details == ["FIELD_TYPE_ERROR", "evacuate_batch_size"]


def test_records_are_complete_with_wire_types(lab, connect):
    session = connect(lab)
    dm = datamodel.load()
    hosts = session.xenapi.host.get_all_records()
    assert len(hosts) == 3
    for record in hosts.values():
        assert set(record) == set(dm.fields("host"))
        assert isinstance(record["memory_overhead"], str)  # ints travel as strings
        assert int(record["memory_overhead"]) > 0
        assert record["enabled"] is True
        assert record["software_version"]["product_brand"] == "XCP-ng"
        assert {"cpu_count", "vendor", "features", "features_hvm", "features_pv",
                "features_hvm_host", "features_pv_host"} <= set(record["cpu_info"])
        assert record["license_server"] == {"address": "localhost", "port": "27000"}  # default
        assert record["suspend_image_sr"] == "OpaqueRef:NULL"
        metrics = session.xenapi.host_metrics.get_record(record["metrics"])
        assert set(metrics) == set(dm.fields("host_metrics"))
        assert metrics["live"] is True
        assert int(metrics["memory_total"]) == 64 * 1024**3
    vms = session.xenapi.VM.get_all_records()
    for record in vms.values():
        assert set(record) == set(dm.fields("VM"))
    by_name = {r["name_label"]: r for r in vms.values()}
    assert by_name["db-local"]["power_state"] == "Running"
    assert by_name["win-template-builder"]["resident_on"] == "OpaqueRef:NULL"
    assert sum(r["is_control_domain"] for r in vms.values()) == 3
    assert any(r["is_a_template"] for r in vms.values())


def test_resident_vms_and_control_domains_are_coherent(lab, connect):
    session = connect(lab)
    hosts = session.xenapi.host.get_all_records()
    vms = session.xenapi.VM.get_all_records()
    for ref, host in hosts.items():
        resident = {vm for vm, r in vms.items() if r["resident_on"] == ref}
        assert set(host["resident_VMs"]) == resident
        assert vms[host["control_domain"]]["is_control_domain"] is True


def test_implicit_getters_setters_and_maps(lab, connect):
    session = connect(lab)
    host = session.xenapi.host.get_by_name_label("xstest2")[0]
    assert session.xenapi.host.get_name_label(host) == "xstest2"
    uuid = session.xenapi.host.get_uuid(host)
    assert uuid
    assert session.xenapi.host.get_by_uuid(uuid) == host
    session.xenapi.host.set_name_description(host, "rack 4")
    assert session.xenapi.host.get_record(host)["name_description"] == "rack 4"

    session.xenapi.host.add_to_other_config(host, "MAINTENANCE_MODE", "true")
    assert session.xenapi.host.get_other_config(host)["MAINTENANCE_MODE"] == "true"
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.host.add_to_other_config(host, "MAINTENANCE_MODE", "false")
    assert failure.value.details == [
        "MAP_DUPLICATE_KEY", "host", "other_config", host, "MAINTENANCE_MODE",
    ]
    session.xenapi.host.remove_from_other_config(host, "MAINTENANCE_MODE")
    assert "MAINTENANCE_MODE" not in session.xenapi.host.get_other_config(host)

    session.xenapi.host.add_tags(host, "gold")
    session.xenapi.host.add_tags(host, "gold")
    assert session.xenapi.host.get_tags(host) == ["gold"]
    session.xenapi.host.remove_tags(host, "gold")
    assert session.xenapi.host.get_tags(host) == []

    vm = session.xenapi.VM.get_by_name_label("web-01")[0]
    assert session.xenapi.VM.get_memory_static_max(vm) == str(8 * 1024**3)
    assert session.xenapi.VM.get_power_state(vm) == "Running"
    assert session.xenapi.VM.get_resident_on(vm) == host


def test_compute_free_memory_follows_the_memory_model(lab, connect):
    session = connect(lab)
    host = session.xenapi.host.get_by_name_label("xstest3")[0]
    record = session.xenapi.host.get_record(host)
    vms = session.xenapi.VM.get_all_records()
    needs = sum(
        int(vms[vm]["memory_static_max"]) + int(vms[vm]["memory_overhead"])
        for vm in record["resident_VMs"]
    )
    total = int(session.xenapi.host_metrics.get_memory_total(record["metrics"]))
    expected = total - int(record["memory_overhead"]) - needs
    assert int(session.xenapi.host.compute_free_memory(host)) == expected
    assert int(session.xenapi.host_metrics.get_memory_free(record["metrics"])) == expected
    assert session.xenapi.host.get_cpu_info(host) == record["cpu_info"]
    assert lab.sim.hosts()["xstest3"].memory_free == expected


def test_lab_summary_and_addresses(lab, connect):
    summary = lab.summary()
    assert summary["master"] == "xstest1"
    assert set(summary["snmp"]) == {"xstest1", "xstest2", "xstest3"}
    assert set(summary["xapi"]) == {"xstest1", "xstest2", "xstest3"}
    assert len(set(summary["xapi"].values())) == 3  # one port per host
    session = connect(lab)
    records = session.xenapi.host.get_all_records().values()
    addresses = {r["name_label"]: r["address"] for r in records}
    assert {n: f"http://{a}" for n, a in addresses.items()} == summary["xapi"]
