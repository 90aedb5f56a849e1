"""Host maintenance end to end: planner + executor + journal + XenAPI driver + the lab.

Everything talks to the pool simulator over real HTTP through the official SDK.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from poolwarden.errors import AuthenticationFailed, ConnectionFailed, NotFound
from poolwarden.hypervisor.xenapi import XenAPIDriver
from poolwarden.lab import Lab, Layout
from poolwarden.remediate.executor import Executor, ExecutorSettings
from poolwarden.remediate.maintenance import LimitReached, host_maintenance
from poolwarden.remediate.planner import plan_maintenance
from poolwarden.store.db import Store
from poolwarden.store.journal import RemediationJournal
from poolwarden.store.lease import LeaseHeld, StoreLease

FAST = ExecutorSettings(poll_interval=0.02, retry_delay=0.05)


def pool_layout(**over: Any) -> Layout:
    doc: dict[str, Any] = {
        "pool": {"name": "lab-pool", "master": "xs1"},
        "hosts": [
            {"name": "xs1", "memory_gib": 64},
            {"name": "xs2", "memory_gib": 64},
            {"name": "xs3", "memory_gib": 64},
        ],
        "vms": [
            {"name": "web-1", "memory_gib": 4, "host": "xs1"},
            {"name": "web-2", "memory_gib": 4, "host": "xs1"},
            {"name": "db-1", "memory_gib": 16, "host": "xs1"},
            {"name": "cache", "memory_gib": 8, "host": "xs2"},
            {"name": "local-db", "memory_gib": 8, "host": "xs3", "local_storage": True},
        ],
        "credentials": {"user": "root", "password": "lab"},
        "migration": {"speed_gib_per_s": 64},
    }
    doc.update(over)
    return Layout.model_validate(doc)


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab(pool_layout()) as running:
        yield running


@pytest.fixture
def driver(lab: Lab) -> Iterator[XenAPIDriver]:
    d = XenAPIDriver(lab.urls["xs2"], "root", "lab")  # a member: must follow HOST_IS_SLAVE
    yield d
    d.close()


@pytest.fixture
def sqlite_store(tmp_path: Any) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path}/pw.db")
    yield s
    s.close()


def migrated_vms(lab: Lab) -> list[str]:
    return sorted(m.vm for m in lab.sim.migrations)


def test_driver_follows_host_is_slave_to_the_master(lab: Lab, driver: XenAPIDriver) -> None:
    assert driver.url == lab.urls["xs1"]
    snap = driver.snapshot()
    assert snap.host(snap.master).name == "xs1"  # type: ignore[union-attr]
    assert snap.layout()["xs1"] == ["db-1", "web-1", "web-2"]


def test_driver_translates_refusals(lab: Lab) -> None:
    with pytest.raises(AuthenticationFailed, match="root"):
        XenAPIDriver(lab.urls["xs1"], "root", "wrong")
    with pytest.raises(ConnectionFailed):
        XenAPIDriver("http://127.0.0.1:9", "root", "lab", timeout=2)


def test_maintenance_of_the_master_hands_over_and_evacuates(
        lab: Lab, driver: XenAPIDriver, sqlite_store: Store) -> None:
    o = host_maintenance(driver, sqlite_store, "xs1", settings=FAST)
    assert o.record.status == "done", o.record.error
    assert o.ok
    assert o.master_before == "xs1"
    assert o.master_after in ("xs2", "xs3")
    assert lab.master_name == o.master_after
    assert o.layout_after["xs1"] == []
    assert sorted(o.layout_after["xs2"] + o.layout_after["xs3"]) == \
        ["cache", "db-1", "local-db", "web-1", "web-2"]
    assert migrated_vms(lab) == ["db-1", "web-1", "web-2"]  # each exactly once
    snap = driver.snapshot()
    xs1 = snap.host("xs1")
    assert xs1 is not None
    assert not xs1.enabled
    assert snap.layout() == o.layout_after
    assert [s.status for s in o.record.steps] == ["done"] * len(o.record.steps)
    assert o.record.steps[0].kind == "designate_master"
    # Marked as XenCenter marks a host in maintenance mode.
    other = driver._call("host.get_other_config", xs1.ref)
    assert other.get("MAINTENANCE_MODE") == "true"


def test_maintenance_with_shutdown_powers_the_host_off(
        lab: Lab, driver: XenAPIDriver, sqlite_store: Store) -> None:
    o = host_maintenance(driver, sqlite_store, "xs2", shutdown=True, settings=FAST)
    assert o.record.status == "done", o.record.error
    assert o.record.steps[-1].kind == "shutdown_host"
    snap = driver.snapshot()
    xs2 = snap.host("xs2")
    assert xs2 is not None
    assert not xs2.live
    assert o.master_after == "xs1"  # a member's maintenance leaves the master alone


def test_infeasible_plan_changes_nothing(driver: XenAPIDriver, lab: Lab,
                                         sqlite_store: Store) -> None:
    before = driver.snapshot()
    o = host_maintenance(driver, sqlite_store, "xs3", settings=FAST)
    assert o.record.status == "infeasible"
    assert not o.ok
    assert [(b.code, b.vm_name) for b in o.record.plan.blockers] == \
        [("VM_REQUIRES_SR", "local-db")]
    after = driver.snapshot()
    assert after.layout() == before.layout()
    assert all(h.enabled for h in after.hosts)
    assert lab.sim.migrations == []


def test_capacity_short_is_infeasible_and_lists_the_vms(sqlite_store: Store) -> None:
    small = pool_layout(
        hosts=[{"name": "xs1", "memory_gib": 64}, {"name": "xs2", "memory_gib": 16}],
        vms=[{"name": "big-1", "memory_gib": 12, "host": "xs1"},
             {"name": "big-2", "memory_gib": 12, "host": "xs1"}],
    )
    with Lab(small) as lab:
        d = XenAPIDriver(lab.urls["xs1"], "root", "lab")
        try:
            o = host_maintenance(d, sqlite_store, "xs1", settings=FAST)
            assert o.record.status == "infeasible"
            assert {b.code for b in o.record.plan.blockers} >= {"HOST_NOT_ENOUGH_FREE_MEMORY"}
            assert lab.master_name == "xs1"  # not even the master moved
            assert lab.sim.migrations == []
            assert all(h.enabled for h in d.snapshot().hosts)
        finally:
            d.close()


def test_dry_run_journals_the_plan_and_changes_nothing(
        lab: Lab, driver: XenAPIDriver, sqlite_store: Store) -> None:
    o = host_maintenance(driver, sqlite_store, "xs1", dry_run=True, settings=FAST)
    assert o.record.status == "dry_run"
    assert o.ok
    assert [s["status"] for s in o.to_json()["steps"]] == ["planned"] * len(o.record.steps)
    assert o.layout_after["xs1"] == []  # as planned …
    assert driver.snapshot().layout()["xs1"] == ["db-1", "web-1", "web-2"]  # … not done
    assert lab.master_name == "xs1"
    assert lab.sim.migrations == []


def test_unknown_host_is_not_found(driver: XenAPIDriver, sqlite_store: Store) -> None:
    with pytest.raises(NotFound, match="xs9"):
        host_maintenance(driver, sqlite_store, "xs9")


def test_second_remediation_on_the_same_pool_is_refused(
        driver: XenAPIDriver, sqlite_store: Store) -> None:
    other = StoreLease(sqlite_store, "pool:lab-pool", holder="other-master/1/x", ttl=60)
    other.acquire()
    with pytest.raises(LeaseHeld, match="other-master"):
        host_maintenance(driver, sqlite_store, "xs1", settings=FAST)


class _TargetFails(XenAPIDriver):
    """A real driver; before its first migration the target host gets disabled in the lab
    (as if an operator did it), so XAPI refuses the migration with HOST_DISABLED."""

    lab: Lab

    def start_migration(self, vm: str, target: str) -> str:
        self._call("host.disable", target)
        return super().start_migration(vm, target)


def test_failure_before_anything_moved_rolls_back(lab: Lab, sqlite_store: Store) -> None:
    d = _TargetFails(lab.urls["xs1"], "root", "lab")
    try:
        o = host_maintenance(d, sqlite_store, "xs2", settings=FAST)
        assert o.record.status == "rolled_back", o.record.error
        assert "HOST_DISABLED" in o.record.error
        xs2 = d.snapshot().host("xs2")
        assert xs2 is not None
        assert xs2.enabled  # re-enabled: nothing had moved
        statuses = {s.kind: s.status for s in o.record.steps}
        assert statuses["disable_host"] == "done"
        assert statuses["migrate_vm"] == "failed"
        assert statuses["verify_empty"] == "pending"
        assert lab.sim.migrations == []
    finally:
        d.close()


def test_journal_timeline_is_complete(lab: Lab, driver: XenAPIDriver,
                                      sqlite_store: Store) -> None:
    o = host_maintenance(driver, sqlite_store, "xs1", settings=FAST)
    rec = RemediationJournal(sqlite_store).get(o.record.id)
    assert rec.status == "done"
    assert rec.finished_at is not None
    for s in rec.steps:
        assert s.started_at is not None
        assert s.finished_at is not None
        assert s.finished_at >= s.started_at
    migrations = [s for s in rec.steps if s.kind == "migrate_vm"]
    assert all(s.task_ref.startswith("OpaqueRef:") for s in migrations)


def test_a_migration_already_in_flight_is_followed_not_repeated(sqlite_store: Store) -> None:
    # As after a crash between XAPI starting a migration and the journal recording it:
    # the plan is journaled, and the VM is already moving when the executor reaches it.
    with Lab(pool_layout(migration={"speed_gib_per_s": 8})) as lab:
        d = XenAPIDriver(lab.urls["xs1"], "root", "lab")
        try:
            plan = plan_maintenance(d.snapshot(evacuating=lab.sim.host_ref("xs1")), "xs1")
            journal = RemediationJournal(sqlite_store)
            rid = journal.create(plan, dry_run=False)
            step = next(s for s in plan.steps if s.vm_name == "db-1")
            assert step.vm is not None
            assert step.target is not None
            foreign = d.start_migration(step.vm, step.target)  # 16 GiB at 8 GiB/s: 2 s
            rec = Executor(d, journal, settings=FAST).run(rid)
            assert rec.status == "done", rec.error
            done = next(s for s in rec.steps if "db-1" in s.title)
            assert done.status == "done"
            assert "started before" in done.detail
            assert migrated_vms(lab) == ["db-1", "web-1", "web-2"]  # db-1 moved once
            assert d.task(foreign).status.value == "success"
        finally:
            d.close()


def test_the_guard_is_asked_under_the_lease_and_can_refuse(driver: XenAPIDriver,
                                                          store: Store) -> None:
    """Safety limits are checked again once the pool's lease is held: a refusal there
    changes nothing and journals nothing."""
    held: list[str | None] = []

    def guard(snap: Any) -> str:
        held.append(StoreLease(store, "pool:lab-pool").current_holder())
        return "max_hosts_down_per_pool=1 reached (by another master)"

    with pytest.raises(LimitReached, match="another master"):
        host_maintenance(driver, store, "xs2", settings=FAST, guard=guard)
    assert len(held) == 1
    assert held[0] is not None  # the lease was ours while the guard ran
    assert RemediationJournal(store).recent() == []
    assert StoreLease(store, "pool:lab-pool").current_holder() is None  # released
    snap = driver.snapshot()
    xs2 = snap.host("xs2")
    assert xs2 is not None
    assert xs2.enabled
