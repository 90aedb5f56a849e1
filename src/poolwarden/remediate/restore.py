"""Leave maintenance: enable the host and, if asked, bring back the VMs it gave away.

Pure, like :mod:`~poolwarden.remediate.planner`: decided from a pool snapshot and the
VMs the host's last maintenance moved (read from the journal by the caller), carried out
by the same executor under the same pool lease. XenCenter's "Exit Maintenance Mode"
offers the same restore; Xen Orchestra leaves the VMs where they are — so restoring is
opt-in here too.

What is refused up front (a blocker each, nothing done): a host that is not running
(``HOST_OFFLINE``: power it on first) and a VM that no longer fits in the host's free
memory (``HOST_NOT_ENOUGH_FREE_MEMORY``, counting the VMs restored before it). VMs that
were shut down, removed or already moved back are left out silently: there is nothing
to restore.
"""

from __future__ import annotations

from collections.abc import Sequence

from poolwarden.errors import NotFound
from poolwarden.hypervisor.base import PoolSnapshot, VMState
from poolwarden.remediate.model import ActionPlan, Blocker, Step, StepKind
from poolwarden.store.journal import RemediationRecord

GOAL = "exit_maintenance"


def moved_away(records: Sequence[RemediationRecord], host: str) -> list[str]:
    """The VM refs the newest maintenance of ``host`` (a ref) migrated away, in the order
    it moved them; [] if the host has left maintenance since. Dry runs and infeasible
    plans changed nothing and are passed over."""
    for r in records:  # newest first
        if r.host != host or r.dry_run or r.status == "infeasible":
            continue
        if r.goal != "maintenance":
            return []
        return [step.vm for step, done in zip(r.plan.steps, r.steps, strict=True)
                if step.kind is StepKind.MIGRATE_VM and step.vm and done.status == "done"]
    return []


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def plan_exit_maintenance(snapshot: PoolSnapshot, host: str, *,
                          restore: Sequence[str] = ()) -> ActionPlan:
    """Enable ``host`` (a ref or a name), then migrate back the running VMs of
    ``restore`` (refs) that are elsewhere, largest first; :class:`NotFound` if unknown."""
    h = snapshot.host(host)
    if h is None:
        raise NotFound(f"no host {host!r} in pool {snapshot.name!r}")
    names = {x.ref: x.name for x in snapshot.hosts}
    master = names.get(snapshot.master, snapshot.master)
    before = snapshot.layout()
    blockers: list[Blocker] = []
    if not h.live:
        blockers.append(Blocker("HOST_OFFLINE", f"{h.name} is not running: power it on "
                                "and wait until the pool sees it live"))
    by_ref = {v.ref: v for v in snapshot.vms}
    wanted = [v for ref in dict.fromkeys(restore) if (v := by_ref.get(ref)) is not None
              and v.running and v.resident_on not in (None, h.ref)]
    wanted.sort(key=lambda v: (-v.memory, v.name, v.ref))
    moves: list[VMState] = []
    free = h.memory_free
    for vm in wanted:
        if vm.memory > free:
            blockers.append(Blocker(
                "HOST_NOT_ENOUGH_FREE_MEMORY",
                f"{vm.name} needs {_gib(vm.memory)}; {h.name} has {_gib(free)} free "
                "after the VMs before it", vm.ref, vm.name))
            continue
        free -= vm.memory
        moves.append(vm)
    if blockers:
        return ActionPlan(GOAL, snapshot.name, h.ref, h.name, feasible=False,
                          blockers=tuple(blockers), master_before=master,
                          master_after=master, layout_before=before,
                          layout_after={k: list(v) for k, v in before.items()},
                          host_was_enabled=h.enabled)
    steps = [Step(StepKind.ENABLE_HOST, h.ref, h.name)]
    after = {k: list(v) for k, v in before.items()}
    for vm in moves:
        src = vm.resident_on or ""
        steps.append(Step(StepKind.MIGRATE_VM, src, names.get(src, src), vm=vm.ref,
                          vm_name=vm.name, target=h.ref, target_name=h.name,
                          memory=vm.memory))
        after[names.get(src, src)].remove(vm.name)
        after[h.name].append(vm.name)
    return ActionPlan(GOAL, snapshot.name, h.ref, h.name, feasible=True,
                      steps=tuple(steps), master_before=master, master_after=master,
                      layout_before=before,
                      layout_after={k: sorted(v) for k, v in after.items()},
                      host_was_enabled=h.enabled)
