"""Maintenance planner: examples of each rule (the properties live in test_planner_properties)."""

from __future__ import annotations

import json

import pytest

from poolwarden.errors import NotFound
from poolwarden.hypervisor.base import HostState, PoolSnapshot, VMState
from poolwarden.remediate.model import ActionPlan, StepKind
from poolwarden.remediate.planner import BEST_FIT, WORST_FIT, place_vms, plan_maintenance

GIB = 2**30
FULL = "0000e3bd-bfebfbff-00000001-20100800"
OLDER = "0000e39d-bfebfbff-00000001-20100800"  # lacks one bit FULL has


def host(name: str, free: int = 64, *, enabled: bool = True, live: bool = True,
         cpu: str = "") -> HostState:
    return HostState(f"OpaqueRef:{name}", name, f"{name}.lab", enabled, live, 128 * GIB,
                     free * GIB, cpu)


def vm(name: str, on: str, mem: int = 4, *, state: str = "Running", cpu: str = "",
       blocked: tuple[str, ...] = ()) -> VMState:
    return VMState(f"OpaqueRef:{name}", name, state, f"OpaqueRef:{on}", mem * GIB, cpu, blocked)


def pool(hosts: list[HostState], vms: list[VMState], *, master: str = "xs1",
         ha: bool = False) -> PoolSnapshot:
    return PoolSnapshot("OpaqueRef:pool", "lab-pool", f"OpaqueRef:{master}", tuple(hosts),
                        tuple(vms), ha)


def kinds(plan: ActionPlan) -> list[StepKind]:
    return [s.kind for s in plan.steps]


def moves(plan: ActionPlan) -> dict[str, str]:
    return {s.vm_name or "": s.target_name or "" for s in plan.steps
            if s.kind is StepKind.MIGRATE_VM}


def codes(plan: ActionPlan) -> list[tuple[str, str | None]]:
    return [(b.code, b.vm_name) for b in plan.blockers]


# ---------------------------------------------------------------- master hand-over


def test_master_goes_to_the_roomiest_host_after_the_moves() -> None:
    # xs2 has more free memory now, but the 8 GiB VM lands there: xs3 ends up roomier
    snap = pool([host("xs1"), host("xs2", 40), host("xs3", 36)], [vm("a", "xs1", 8)])
    plan = plan_maintenance(snap, "xs1")
    assert plan.feasible
    assert kinds(plan) == [StepKind.DESIGNATE_MASTER, StepKind.DISABLE_HOST,
                           StepKind.MIGRATE_VM, StepKind.VERIFY_EMPTY]
    assert (plan.steps[0].host, plan.steps[0].host_name) == ("OpaqueRef:xs3", "xs3")
    assert (plan.master_before, plan.master_after) == ("xs1", "xs3")
    assert moves(plan) == {"a": "xs2"}


def test_master_ties_go_to_the_first_name_and_never_to_a_sick_host() -> None:
    snap = pool([host("xs1"), host("xs9", 90, enabled=False), host("xs8", 90, live=False),
                 host("xs3", 20), host("xs2", 20)], [])
    plan = plan_maintenance(snap, "xs1")
    assert plan.master_after == "xs2"
    assert kinds(plan) == [StepKind.DESIGNATE_MASTER, StepKind.DISABLE_HOST,
                           StepKind.VERIFY_EMPTY]


def test_no_designation_when_the_host_is_not_master() -> None:
    plan = plan_maintenance(pool([host("xs1"), host("xs2")], [vm("a", "xs2")]), "xs2")
    assert kinds(plan) == [StepKind.DISABLE_HOST, StepKind.MIGRATE_VM, StepKind.VERIFY_EMPTY]
    assert plan.master_before == plan.master_after == "xs1"


def test_master_without_any_successor_is_infeasible() -> None:
    snap = pool([host("xs1"), host("xs2", enabled=False), host("xs3", live=False)],
                [vm("a", "xs1")])
    plan = plan_maintenance(snap, "xs1")
    assert not plan.feasible
    assert plan.steps == ()
    assert codes(plan) == [("NO_HOSTS_AVAILABLE", None), ("NO_HOSTS_AVAILABLE", "a")]


def test_ha_blocks_the_master_hand_over_only() -> None:
    hosts = [host("xs1"), host("xs2")]
    plan = plan_maintenance(pool(hosts, [vm("a", "xs1")], ha=True), "xs1")
    assert not plan.feasible
    assert codes(plan) == [("HA_IS_ENABLED", None)]
    assert plan.master_after == "xs1"
    assert plan_maintenance(pool(hosts, [vm("a", "xs2")], ha=True), "xs2").feasible


# ---------------------------------------------------------------- placement


def test_worst_fit_spreads_largest_first() -> None:
    snap = pool([host("xs1"), host("xs2", 32), host("xs3", 32)],
                [vm(n, "xs2", m) for n, m in (("d", 2), ("a", 8), ("c", 4), ("b", 8))])
    plan = plan_maintenance(snap, "xs2")
    migrations = [s for s in plan.steps if s.kind is StepKind.MIGRATE_VM]
    assert [s.vm_name for s in migrations] == ["a", "b", "c", "d"]  # largest, then by name
    assert [s.memory for s in migrations] == [8 * GIB, 8 * GIB, 4 * GIB, 2 * GIB]
    # xs1 (64) takes a, b, c and d still: worst fit always picks the roomiest host
    assert moves(plan) == {"a": "xs1", "b": "xs1", "c": "xs1", "d": "xs1"}
    snap = pool([host("xs1", 16), host("xs2", 32), host("xs3", 16)],
                [vm(n, "xs2", 4) for n in "abcd"])
    assert moves(plan_maintenance(snap, "xs2")) == {"a": "xs1", "b": "xs3", "c": "xs1",
                                                    "d": "xs3"}
    assert all(s.host_name == "xs2" for s in migrations)


def test_best_fit_rescues_what_worst_fit_cannot_place() -> None:
    vms = [vm("six", "xs1", 6), vm("five-a", "xs1", 5), vm("five-b", "xs1", 5)]
    targets = [host("xs2", 10), host("xs3", 6)]
    assert place_vms(vms[:1], targets).strategy == WORST_FIT
    placement = place_vms(vms, targets)
    assert placement.strategy == BEST_FIT
    assert placement.complete
    plan = plan_maintenance(pool([host("xs1"), *targets], vms), "xs1")
    assert plan.feasible
    assert moves(plan) == {"six": "xs3", "five-a": "xs2", "five-b": "xs2"}


def test_capacity_shortfall_lists_every_unplaced_vm() -> None:
    snap = pool([host("xs1"), host("xs2", 8), host("xs3", 8)],
                [vm("a", "xs1", 6), vm("b", "xs1", 6), vm("c", "xs1", 6), vm("d", "xs1", 6)])
    plan = plan_maintenance(snap, "xs1")
    assert not plan.feasible
    assert plan.steps == ()
    assert codes(plan) == [("HOST_NOT_ENOUGH_FREE_MEMORY", "c"),
                           ("HOST_NOT_ENOUGH_FREE_MEMORY", "d")]
    assert "needs 6.00 GiB" in plan.blockers[0].message
    assert "2.00 GiB" in plan.blockers[0].message  # what is left on the roomiest target
    assert plan.layout_after == plan.layout_before


def test_cpu_incompatible_targets_are_skipped() -> None:
    snap = pool([host("xs1", cpu=FULL), host("xs2", 90, cpu=OLDER), host("xs3", 10, cpu=FULL)],
                [vm("new", "xs1", 4, cpu=FULL), vm("old", "xs1", 4, cpu=OLDER)])
    assert moves(plan_maintenance(snap, "xs1")) == {"new": "xs3", "old": "xs2"}


def test_cpu_alone_blocks_a_vm() -> None:
    snap = pool([host("xs1", cpu=FULL), host("xs2", 90, cpu=OLDER)],
                [vm("new", "xs1", cpu=FULL), vm("any", "xs1")])
    plan = plan_maintenance(snap, "xs1")
    assert codes(plan) == [("VM_INCOMPATIBLE_WITH_THIS_HOST", "new")]
    assert FULL in plan.blockers[0].message


def test_disabled_and_dead_hosts_are_never_targets() -> None:
    snap = pool([host("xs1"), host("xs2", 500, enabled=False), host("xs3", 500, live=False),
                 host("xs4", 9)], [vm("a", "xs1", 4), vm("b", "xs1", 4)])
    plan = plan_maintenance(snap, "xs1")
    assert moves(plan) == {"a": "xs4", "b": "xs4"}
    assert plan.master_after == "xs4"


def test_no_other_usable_host() -> None:
    snap = pool([host("xs1", enabled=False), host("xs2")], [vm("a", "xs2")])
    assert codes(plan_maintenance(snap, "xs2")) == [("NO_HOSTS_AVAILABLE", "a")]
    # an empty non-master host needs nobody else
    assert plan_maintenance(pool([host("xs1"), host("xs2")], []), "xs2").feasible


# ---------------------------------------------------------------- blockers


def test_anchored_vm_makes_the_plan_infeasible_with_its_code() -> None:
    anchored = vm("db-local", "xs2", 8, blocked=("VM_REQUIRES_SR", "OpaqueRef:db-local",
                                                 "OpaqueRef:sr-local"))
    snap = pool([host("xs1"), host("xs2")], [anchored, vm("web", "xs2")])
    plan = plan_maintenance(snap, "xs2")
    assert not plan.feasible
    assert plan.steps == ()
    (blocker,) = plan.blockers
    assert (blocker.code, blocker.vm, blocker.vm_name) == ("VM_REQUIRES_SR",
                                                           "OpaqueRef:db-local", "db-local")
    assert "db-local" in blocker.message
    assert "VM_REQUIRES_SR(OpaqueRef:db-local, OpaqueRef:sr-local)" in blocker.message


def test_every_reason_is_listed_at_once() -> None:
    snap = pool([host("xs1", cpu=FULL), host("xs2", 5, cpu=OLDER)],
                [vm("pinned", "xs1", 1, blocked=("VM_REQUIRES_SR", "x", "y")),
                 vm("new", "xs1", 1, cpu=FULL), vm("big", "xs1", 6), vm("ok", "xs1", 2)],
                ha=True)
    assert sorted(codes(plan_maintenance(snap, "xs1"))) == sorted([
        ("HA_IS_ENABLED", None), ("VM_REQUIRES_SR", "pinned"),
        ("VM_INCOMPATIBLE_WITH_THIS_HOST", "new"), ("HOST_NOT_ENOUGH_FREE_MEMORY", "big"),
    ])


def test_dead_host_cannot_be_evacuated() -> None:
    plan = plan_maintenance(pool([host("xs1"), host("xs2", live=False)], [vm("a", "xs2")]),
                            "xs2")
    assert codes(plan) == [("HOST_OFFLINE", None)]


def test_dead_master_stops_any_plan() -> None:
    plan = plan_maintenance(pool([host("xs1", live=False), host("xs2"), host("xs3")],
                                 [vm("a", "xs2")]), "xs2")
    assert codes(plan) == [("HOST_OFFLINE", None)]
    assert "master xs1" in plan.blockers[0].message


# ---------------------------------------------------------------- steps and records


def test_only_running_and_paused_vms_move() -> None:
    snap = pool([host("xs1"), host("xs2")],
                [vm("run", "xs2"), vm("pause", "xs2", state="Paused"),
                 vm("halt", "xs2", 999, state="Halted"), vm("susp", "xs2", 999, state="Suspended")])
    plan = plan_maintenance(snap, "xs2")
    assert plan.feasible
    assert set(moves(plan)) == {"run", "pause"}


def test_shutdown_step_only_when_asked() -> None:
    snap = pool([host("xs1"), host("xs2")], [vm("a", "xs2")])
    assert StepKind.SHUTDOWN_HOST not in kinds(plan_maintenance(snap, "xs2"))
    plan = plan_maintenance(snap, "xs2", shutdown=True)
    assert kinds(plan)[-2:] == [StepKind.VERIFY_EMPTY, StepKind.SHUTDOWN_HOST]
    assert plan.steps[-1].host == "OpaqueRef:xs2"


def test_already_disabled_host_keeps_its_disable_step_and_says_so() -> None:
    snap = pool([host("xs1"), host("xs2", enabled=False)], [vm("a", "xs2")])
    plan = plan_maintenance(snap, "xs2")
    assert plan.feasible
    assert not plan.host_was_enabled
    assert StepKind.DISABLE_HOST in kinds(plan)
    assert plan_maintenance(pool([host("xs1"), host("xs2")], []), "xs2").host_was_enabled


def test_layouts_before_and_after() -> None:
    snap = pool([host("xs1"), host("xs2", 10), host("xs3", 20)],
                [vm("b", "xs1"), vm("a", "xs1"), vm("z", "xs2"), vm("h", "xs1", state="Halted")])
    plan = plan_maintenance(snap, "xs1")
    assert plan.layout_before == {"xs1": ["a", "b"], "xs2": ["z"], "xs3": []}
    assert plan.layout_after == {"xs1": [], "xs2": ["z"], "xs3": ["a", "b"]}


def test_host_found_by_ref_or_name_and_unknown_is_not_found() -> None:
    snap = pool([host("xs1"), host("xs2")], [vm("a", "xs2")])
    assert plan_maintenance(snap, "OpaqueRef:xs2") == plan_maintenance(snap, "xs2")
    assert plan_maintenance(snap, "xs2").host == "OpaqueRef:xs2"
    with pytest.raises(NotFound, match="xs9"):
        plan_maintenance(snap, "xs9")


@pytest.mark.parametrize("ha", [False, True])
def test_plan_json_round_trip(ha: bool) -> None:
    snap = pool([host("xs1"), host("xs2")], [vm("a", "xs1"), vm("b", "xs2")], ha=ha)
    plan = plan_maintenance(snap, "xs1", shutdown=True)
    assert plan.feasible is not ha
    assert ActionPlan.from_json(plan.to_json()) == plan
    assert ActionPlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan


def test_plans_journaled_before_host_was_enabled_existed_still_load() -> None:
    plan = plan_maintenance(pool([host("xs1"), host("xs2")], []), "xs2")
    old = {k: v for k, v in plan.to_json().items() if k != "host_was_enabled"}
    assert ActionPlan.from_json(old) == plan
