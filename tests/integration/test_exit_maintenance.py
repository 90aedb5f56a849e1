"""Leaving maintenance end to end (planner + executor + journal + XenAPI driver + lab):
the host is enabled and unmarked; with ``restore`` the VMs its maintenance moved away
come back; a host that is down, or a pool busy with another remediation, is refused.
``store`` is the suite's: each test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from poolwarden.hypervisor.xenapi import XenAPIDriver
from poolwarden.lab import Lab, Layout
from poolwarden.remediate.executor import ExecutorSettings
from poolwarden.remediate.maintenance import host_exit_maintenance, host_maintenance
from poolwarden.store.db import Store
from poolwarden.store.journal import RemediationJournal
from poolwarden.store.lease import LeaseHeld, StoreLease

FAST = ExecutorSettings(poll_interval=0.02, retry_delay=0.05)
POOL = "lab-pool"


@pytest.fixture
def lab() -> Iterator[Lab]:
    layout = Layout.model_validate({
        "pool": {"name": POOL, "master": "xs1"},
        "hosts": [{"name": n, "memory_gib": 64} for n in ("xs1", "xs2", "xs3")],
        "vms": [
            {"name": "web-1", "memory_gib": 4, "host": "xs1"},
            {"name": "db-1", "memory_gib": 16, "host": "xs1"},
            {"name": "cache", "memory_gib": 8, "host": "xs2"},
        ],
        "credentials": {"user": "root", "password": "lab"},
        "migration": {"speed_gib_per_s": 64},
    })
    with Lab(layout) as running:
        yield running


@pytest.fixture
def driver(lab: Lab) -> Iterator[XenAPIDriver]:
    urls = [lab.urls[n] for n in ("xs1", "xs2", "xs3")]
    d = XenAPIDriver(urls[0], "root", "lab", fallback_urls=urls[1:])
    yield d
    d.close()


def power_on(lab: Lab, host: str, within: float = 5.0) -> None:
    """Boot ``host`` once the lab has closed its port (just after host.shutdown answered)."""
    deadline = time.monotonic() + within
    while True:
        try:
            lab.power_on(host)
            return
        except OSError:  # still bound: the shutdown has not closed it yet
            assert time.monotonic() < deadline
            time.sleep(0.05)


def flag(driver: XenAPIDriver, host: str) -> str | None:
    ref = driver.snapshot().host(host).ref  # type: ignore[union-attr]
    return driver._call("host.get_other_config", ref).get("MAINTENANCE_MODE")


def test_leaving_with_restore_brings_the_vms_back(
        lab: Lab, driver: XenAPIDriver, store: Store) -> None:
    went = host_maintenance(driver, store, "xs1", settings=FAST)
    assert went.ok, went.record.error
    assert flag(driver, "xs1") == "true"
    back = host_exit_maintenance(driver, store, "xs1", restore=True, settings=FAST,
                                 requested_by="test")
    assert back.ok, back.record.error
    assert back.record.goal == "exit_maintenance"
    assert [s.kind for s in back.record.steps] == ["enable_host", "migrate_vm", "migrate_vm"]
    assert [s.title for s in back.record.steps][1].startswith("migrate db-1 ")  # largest first
    snap = driver.snapshot()
    assert snap.host("xs1").enabled  # type: ignore[union-attr]
    assert flag(driver, "xs1") is None  # XenCenter no longer shows it in maintenance
    assert snap.layout()["xs1"] == ["db-1", "web-1"]
    assert back.layout_after["xs1"] == ["db-1", "web-1"]
    assert lab.master_name == went.master_after  # the master role is not taken back
    moves = [m.vm for m in lab.sim.migrations]
    assert sorted(moves) == ["db-1", "db-1", "web-1", "web-1"]  # away once, back once


def test_leaving_without_restore_leaves_the_vms_where_they_are(
        driver: XenAPIDriver, store: Store) -> None:
    went = host_maintenance(driver, store, "xs2", settings=FAST)
    assert went.ok
    back = host_exit_maintenance(driver, store, "xs2", settings=FAST)
    assert back.ok
    assert [s.kind for s in back.record.steps] == ["enable_host"]
    snap = driver.snapshot()
    assert snap.host("xs2").enabled  # type: ignore[union-attr]
    assert snap.layout()["xs2"] == []


def test_a_dry_run_plans_and_changes_nothing(driver: XenAPIDriver, store: Store) -> None:
    assert host_maintenance(driver, store, "xs2", settings=FAST).ok
    plan = host_exit_maintenance(driver, store, "xs2", restore=True, dry_run=True)
    assert plan.record.status == "dry_run"
    assert plan.layout_after["xs2"] == ["cache"]
    assert not driver.snapshot().host("xs2").enabled  # type: ignore[union-attr]


def test_a_host_that_is_down_is_refused_until_powered_on(
        lab: Lab, driver: XenAPIDriver, store: Store) -> None:
    assert host_maintenance(driver, store, "xs3", shutdown=True, settings=FAST).ok
    refused = host_exit_maintenance(driver, store, "xs3", settings=FAST)
    assert refused.record.status == "infeasible"
    assert [b.code for b in refused.record.plan.blockers] == ["HOST_OFFLINE"]
    lab.sim.auto_enable[driver.snapshot().host("xs3").ref] = False  # type: ignore[union-attr]
    power_on(lab, "xs3")
    back = host_exit_maintenance(driver, store, "xs3", settings=FAST)
    assert back.ok, back.record.error
    assert driver.snapshot().host("xs3").enabled  # type: ignore[union-attr]


def test_refused_while_another_remediation_holds_the_pool(
        driver: XenAPIDriver, store: Store) -> None:
    assert host_maintenance(driver, store, "xs2", settings=FAST).ok
    other = StoreLease(store, f"pool:{POOL}", ttl=30)
    other.acquire()
    try:
        with pytest.raises(LeaseHeld):
            host_exit_maintenance(driver, store, "xs2", settings=FAST)
    finally:
        other.release()
    assert [r.goal for r in RemediationJournal(store).recent(POOL)] == ["maintenance"]
