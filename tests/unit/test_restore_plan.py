"""The pure side of leaving maintenance: which VMs come back, and what refuses it."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_planner import host, pool, vm

from poolwarden.errors import NotFound
from poolwarden.remediate.model import StepKind
from poolwarden.remediate.planner import plan_maintenance
from poolwarden.remediate.restore import moved_away, plan_exit_maintenance
from poolwarden.store.db import Store
from poolwarden.store.journal import RemediationJournal


def test_restore_moves_back_largest_first_and_skips_what_has_nothing_to_restore() -> None:
    snap = pool([host("xs1"), host("xs2", enabled=False, free=40), host("xs3")], [
        vm("web", "xs1", 4), vm("db", "xs3", 16), vm("off", "xs1", 8, state="Halted"),
        vm("home", "xs2", 2),
    ])
    refs = ["OpaqueRef:web", "OpaqueRef:db", "OpaqueRef:off", "OpaqueRef:home",
            "OpaqueRef:gone", "OpaqueRef:web"]
    plan = plan_exit_maintenance(snap, "xs2", restore=refs)
    assert plan.feasible
    assert [(s.kind, s.vm_name, s.host_name, s.target_name) for s in plan.steps] == [
        (StepKind.ENABLE_HOST, None, "xs2", None),
        (StepKind.MIGRATE_VM, "db", "xs3", "xs2"),
        (StepKind.MIGRATE_VM, "web", "xs1", "xs2"),
    ]
    assert plan.layout_after == {"xs1": [], "xs2": ["db", "home", "web"], "xs3": []}
    assert plan.goal == "exit_maintenance"
    assert not plan.host_was_enabled


def test_what_no_longer_fits_and_a_dead_host_are_blockers() -> None:
    snap = pool([host("xs1"), host("xs2", enabled=False, live=False, free=10)],
                [vm("a", "xs1", 8), vm("b", "xs1", 4)])
    plan = plan_exit_maintenance(snap, "xs2", restore=["OpaqueRef:a", "OpaqueRef:b"])
    assert not plan.feasible
    assert plan.steps == ()
    assert [(b.code, b.vm_name) for b in plan.blockers] == [
        ("HOST_OFFLINE", None), ("HOST_NOT_ENOUGH_FREE_MEMORY", "b")]
    assert "2.00 GiB free" in plan.blockers[1].message  # after a's 8 GiB of the 10
    assert plan.layout_after == plan.layout_before
    with pytest.raises(NotFound):
        plan_exit_maintenance(snap, "xs9")


def test_moved_away_reads_the_maintenance_the_host_is_still_in(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path}/pw.db")
    try:
        journal = RemediationJournal(store)
        snap = pool([host("xs1"), host("xs2"), host("xs3")],
                    [vm("a", "xs2", 4), vm("b", "xs2", 2), vm("c", "xs3", 2)])
        real = journal.create(plan_maintenance(snap, "xs2"), dry_run=False)
        migrations = [i for i, s in enumerate(journal.get(real).plan.steps)
                      if s.kind is StepKind.MIGRATE_VM]
        journal.step_finished(real, migrations[0], "done")  # a moved, b's move failed
        journal.step_finished(real, migrations[1], "failed")
        journal.create(plan_maintenance(snap, "xs3"), dry_run=False)  # another host's
        records = journal.recent("lab-pool")
        assert moved_away(records, "OpaqueRef:xs2") == ["OpaqueRef:a"]
        assert moved_away(records, "OpaqueRef:xs1") == []
        journal.create(plan_maintenance(snap, "xs2"), dry_run=True)  # changed nothing
        exit_plan = plan_exit_maintenance(snap, "xs2")
        journal.create(exit_plan, dry_run=True)
        assert moved_away(journal.recent("lab-pool"), "OpaqueRef:xs2") == ["OpaqueRef:a"]
        journal.create(exit_plan, dry_run=False)  # it left maintenance: nothing to restore
        assert moved_away(journal.recent("lab-pool"), "OpaqueRef:xs2") == []
    finally:
        store.close()
