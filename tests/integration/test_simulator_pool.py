"""Pool master hand-over and event.from."""

from __future__ import annotations

import threading
import time

import pytest
import XenAPI


def _host(session, name):
    return session.xenapi.host.get_by_name_label(name)[0]


def test_designate_new_master_moves_logins_to_the_new_master(lab, connect):
    session = connect(lab)
    old_handle = session.handle
    pool = session.xenapi.pool.get_all()[0]
    new_master = _host(session, "xstest2")

    session.xenapi.pool.designate_new_master(new_master)

    assert lab.master_name == "xstest2"
    assert lab.summary()["master"] == "xstest2"
    assert lab.sim.hosts()["xstest2"].master
    # the old session died with the toolstack restart; the SDK logs in again on the old
    # master's port and is told where the master went
    new_address = lab.urls["xstest2"].removeprefix("http://")
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.pool.get_master(pool)
    assert failure.value.details == ["HOST_IS_SLAVE", new_address]
    raw = connect(lab.urls["xstest2"], login=False)
    assert raw.pool.get_all(old_handle)["ErrorDescription"] == ["SESSION_INVALID", old_handle]

    fresh = connect(lab)  # follows lab.master_name
    assert fresh.xenapi.pool.get_master(pool) == new_master
    with pytest.raises(XenAPI.Failure) as failure:
        connect(lab, host="xstest1")
    assert failure.value.details == ["HOST_IS_SLAVE", new_address]


def test_designate_new_master_refused_with_ha(lab, connect):
    session = connect(lab)
    lab.sim.set_ha_enabled(True)
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.pool.designate_new_master(_host(session, "xstest3"))
    assert failure.value.details == ["HA_IS_ENABLED"]
    assert lab.master_name == "xstest1"
    lab.sim.set_ha_enabled(False)
    session.xenapi.pool.designate_new_master(_host(session, "xstest3"))
    assert lab.master_name == "xstest3"


def test_event_from_initial_token_lists_current_objects(lab, connect):
    session = connect(lab)
    batch = session.xenapi.event_from(["host", "pool"], "", 0.0)
    assert {(e["class"], e["operation"]) for e in batch["events"]} == {
        ("host", "add"), ("pool", "add"),
    }
    assert len(batch["events"]) == 4
    assert batch["token"]
    assert batch["valid_ref_counts"] == {}
    snapshot = next(e["snapshot"] for e in batch["events"] if e["class"] == "pool")
    assert snapshot["name_label"] == "lab-pool"


def test_event_from_blocks_until_a_change(lab, connect):
    watcher, actor = connect(lab), connect(lab)
    token = watcher.xenapi.event_from(["vm"], "", 0.0)["token"]
    vm = actor.xenapi.VM.get_by_name_label("web-01")[0]
    result = {}

    def watch():
        started = time.monotonic()
        result["batch"] = watcher.xenapi.event_from(["vm"], token, 5.0)
        result["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=watch)
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive()  # nothing changed yet: still waiting
    actor.xenapi.VM.set_name_description(vm, "changed")
    thread.join(5)
    assert 0.25 <= result["elapsed"] < 3.0
    events = result["batch"]["events"]
    assert [(e["class"], e["operation"], e["ref"]) for e in events] == [("vm", "mod", vm)]
    assert events[0]["snapshot"]["name_description"] == "changed"
    assert result["batch"]["token"] > token


def test_event_from_times_out_empty_and_follows_migrations(lab, connect):
    session = connect(lab)
    token = session.xenapi.event_from(["pool"], "", 0.0)["token"]
    started = time.monotonic()
    batch = session.xenapi.event_from(["pool"], token, 0.3)
    assert batch["events"] == []
    assert 0.25 <= time.monotonic() - started < 2.0

    token = session.xenapi.event_from(["vm", "host"], "", 0.0)["token"]
    vm = session.xenapi.VM.get_by_name_label("web-02")[0]
    target = session.xenapi.host.get_by_name_label("xstest1")[0]
    session.xenapi.VM.pool_migrate(vm, target, {"live": "true"})
    batch = session.xenapi.event_from(["vm", "host"], token, 1.0)
    latest = {(e["class"], e["ref"]): e for e in batch["events"]}
    assert latest[("vm", vm)]["snapshot"]["resident_on"] == target
    assert vm in latest[("host", target)]["snapshot"]["resident_VMs"]


def test_event_from_bad_token(lab, connect):
    session = connect(lab)
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.event_from(["vm"], "not-a-token", 0.0)
    assert failure.value.details == ["EVENT_FROM_TOKEN_PARSE_FAILURE", "not-a-token"]
