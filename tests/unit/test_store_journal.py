"""The remediation journal keeps the decided plan and each step's fate."""

from __future__ import annotations

import pytest

from poolwarden.errors import NotFound
from poolwarden.remediate.model import ActionPlan, Blocker, Step, StepKind
from poolwarden.store.db import Store
from poolwarden.store.journal import RemediationJournal


def _plan(feasible: bool = True) -> ActionPlan:
    steps = (
        Step(StepKind.DISABLE_HOST, "OpaqueRef:h1", "xs1"),
        Step(StepKind.MIGRATE_VM, "OpaqueRef:h1", "xs1", vm="OpaqueRef:v1", vm_name="web",
             target="OpaqueRef:h2", target_name="xs2", memory=4 << 30),
        Step(StepKind.VERIFY_EMPTY, "OpaqueRef:h1", "xs1"),
    )
    return ActionPlan(
        goal="maintenance", pool="lab", host="OpaqueRef:h1", host_name="xs1",
        feasible=feasible, steps=steps if feasible else (),
        blockers=() if feasible else (Blocker("VM_REQUIRES_SR", "db on local SR", "v", "db"),),
        master_before="xs1", master_after="xs1",
        layout_before={"xs1": ["web"], "xs2": []},
        layout_after={"xs1": [], "xs2": ["web"]} if feasible else {"xs1": ["web"], "xs2": []},
    )


def test_plan_and_steps_round_trip_through_the_store(store: Store) -> None:
    j = RemediationJournal(store)
    rid = j.create(_plan(), dry_run=False, requested_by="t")
    rec = j.get(rid)
    assert rec.plan == _plan()
    assert rec.status == "planned"
    assert [s.status for s in rec.steps] == ["pending"] * 3
    assert [s.title for s in rec.steps][1] == "migrate web from xs1 to xs2"


def test_step_lifecycle_and_open_remediation_lookup(store: Store) -> None:
    j = RemediationJournal(store)
    rid = j.create(_plan(), dry_run=False)
    j.step_started(rid, 0)
    j.step_finished(rid, 0, "done")
    j.step_started(rid, 1)
    j.step_task(rid, 1, "OpaqueRef:task1")
    rec = j.open_for_pool("lab")
    assert rec is not None
    assert rec.id == rid
    assert rec.status == "running"
    assert rec.steps[0].status == "done"
    assert rec.steps[0].finished_at is not None
    assert (rec.steps[1].status, rec.steps[1].task_ref) == ("running", "OpaqueRef:task1")
    j.finish(rid, "done")
    assert j.open_for_pool("lab") is None
    assert j.get(rid).finished_at is not None


def test_infeasible_and_dry_run_plans_are_never_resumed(store: Store) -> None:
    j = RemediationJournal(store)
    rid = j.create(_plan(feasible=False), dry_run=False)
    assert j.get(rid).status == "infeasible"
    assert j.get(rid).plan.blockers[0].code == "VM_REQUIRES_SR"
    j.create(_plan(), dry_run=True)
    assert j.open_for_pool("lab") is None
    assert [r.id for r in j.recent("lab")] == [rid + 1, rid]


def test_unknown_remediation_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        RemediationJournal(store).get(999)
