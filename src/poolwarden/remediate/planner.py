"""Plan a host's maintenance from a pool snapshot: pure, deterministic, no I/O, no clock.

:func:`plan_maintenance` answers "can host H be emptied, and how?" as an
:class:`~poolwarden.remediate.model.ActionPlan` the executor journals and runs step by step:
designate a new master (if H is master) → disable H → migrate each VM → verify H is empty
→ (optionally) shut H down. If anything would fail, the plan is *infeasible*: no steps,
and a :class:`~poolwarden.remediate.model.Blocker` for every reason, so a person sees all
of them at once rather than one per attempt.

The checks mirror what XAPI (and the lab's pool simulator) would refuse, so a feasible
plan does not fail half-way on a predictable error:

* targets are other hosts that are ``enabled`` and ``live`` (``HOST_DISABLED``,
  ``HOST_OFFLINE``);
* a VM needs ``vm.memory`` bytes free on its target, counting what the plan already put
  there (``HOST_NOT_ENOUGH_FREE_MEMORY``);
* the target must offer every CPU feature the VM booted with
  (``VM_INCOMPATIBLE_WITH_THIS_HOST``);
* ``VMState.blocked`` (from ``host.get_vms_which_prevent_evacuation``) pins a VM.

Placement decision. Packing VMs into hosts is bin packing (NP-hard), so two greedy
passes, both over VMs sorted largest first (ties by name, then ref):

1. **worst-fit decreasing**: each VM goes to the compatible target with the most free
   memory left. It spreads the load, so the pool keeps headroom everywhere after the
   evacuation — what an operator wants on the hosts that now carry H's work.
2. only if that leaves a VM unplaced, **best-fit decreasing**: the tightest compatible
   target that fits. It packs better when memory is short.

The plan is infeasible only if both fail; the blockers then name the VMs the better pass
(fewer unplaced VMs, then fewer unplaced bytes) could not place. Targets are kept per
distinct CPU key in lists sorted by free memory, so each choice is a bisection, not a scan
of every host.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Sequence
from dataclasses import dataclass

from poolwarden.errors import NotFound
from poolwarden.hypervisor.base import HostState, PoolSnapshot, VMState
from poolwarden.remediate.model import ActionPlan, Blocker, Step, StepKind
from poolwarden.tools.cpu_level import is_superset

GOAL = "maintenance"
WORST_FIT = "worst-fit"
BEST_FIT = "best-fit"

_Slot = tuple[int, str, str]  # (free bytes left, host name, host ref): sorts by free memory


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one packing pass put the VMs."""

    strategy: str  # WORST_FIT | BEST_FIT
    targets: dict[str, str]  # vm ref → host ref
    unplaced: tuple[VMState, ...]
    free_after: dict[str, int]  # host ref → free bytes left after the placements
    #: vm ref of an unplaced VM → the most free memory left on any compatible target
    largest_left: dict[str, int]

    @property
    def complete(self) -> bool:
        return not self.unplaced

    @property
    def shortfall(self) -> tuple[int, int]:
        """(unplaced VMs, unplaced bytes): smaller is better."""
        return len(self.unplaced), sum(v.memory for v in self.unplaced)


class _Compat:
    """Memoised ``is_superset``: a pool has few distinct keys but many VMs."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], bool] = {}

    def __call__(self, host_key: str, vm_key: str) -> bool:
        pair = (host_key, vm_key)
        ok = self._seen.get(pair)
        if ok is None:
            ok = self._seen[pair] = is_superset(host_key, vm_key)
        return ok


class _Bins:
    """Targets sharing one CPU key, sorted by free memory so a fit is one bisection."""

    def __init__(self, hosts: Sequence[HostState]) -> None:
        self.slots: list[_Slot] = sorted((h.memory_free, h.name, h.ref) for h in hosts)

    def roomiest(self) -> _Slot | None:
        """Most free memory; among equals the first by name (deterministic)."""
        if not self.slots:
            return None
        return self.slots[bisect_left(self.slots, (self.slots[-1][0],))]

    def tightest(self, need: int) -> _Slot | None:
        """Least free memory that still holds ``need`` bytes."""
        i = bisect_left(self.slots, (need,))
        return self.slots[i] if i < len(self.slots) else None

    def take(self, slot: _Slot, need: int) -> None:
        del self.slots[bisect_left(self.slots, slot)]
        insort(self.slots, (slot[0] - need, slot[1], slot[2]))


def _vm_order(vm: VMState) -> tuple[int, str, str]:
    return -vm.memory, vm.name, vm.ref


def _roomiest_first(slot: _Slot) -> tuple[int, str, str]:
    return -slot[0], slot[1], slot[2]


def _choose(bins: Sequence[_Bins], need: int, strategy: str) -> _Slot | None:
    """The slot ``strategy`` gives a VM of ``need`` bytes, or None if no target holds it."""
    if strategy == WORST_FIT:
        # why: the roomiest host keeps the most headroom after the move (spreads the load)
        tops = [s for b in bins if (s := b.roomiest()) is not None]
        slot = min(tops, key=_roomiest_first, default=None)
        return slot if slot is not None and slot[0] >= need else None
    # why: the tightest fit keeps big holes free for the big VMs still to come
    return min((s for b in bins if (s := b.tightest(need)) is not None), default=None)


def _pack(
    vms: Sequence[VMState], targets: Sequence[HostState], compat: _Compat, strategy: str,
) -> Placement:
    """One greedy pass over ``vms`` (already largest first)."""
    by_key: dict[str, list[HostState]] = {}
    for h in targets:
        by_key.setdefault(h.cpu_features, []).append(h)
    groups = {key: _Bins(hosts) for key, hosts in by_key.items()}
    key_of = {h.ref: h.cpu_features for h in targets}
    usable: dict[str, list[_Bins]] = {}  # vm cpu key → bins of compatible targets

    def bins_for(vm: VMState) -> list[_Bins]:
        found = usable.get(vm.cpu_features)
        if found is None:
            found = usable[vm.cpu_features] = [
                b for k, b in groups.items() if compat(k, vm.cpu_features)]
        return found

    placed: dict[str, str] = {}
    unplaced: list[VMState] = []
    for vm in vms:
        slot = _choose(bins_for(vm), vm.memory, strategy)
        if slot is None:
            unplaced.append(vm)
            continue
        groups[key_of[slot[2]]].take(slot, vm.memory)
        placed[vm.ref] = slot[2]
    free_after = {ref: free for b in groups.values() for free, _, ref in b.slots}
    largest_left = {
        vm.ref: max((b.slots[-1][0] for b in bins_for(vm) if b.slots), default=0)
        for vm in unplaced
    }
    return Placement(strategy, placed, tuple(unplaced), free_after, largest_left)


def _place(vms: Sequence[VMState], targets: Sequence[HostState], compat: _Compat) -> Placement:
    order = sorted(vms, key=_vm_order)
    spread = _pack(order, targets, compat, WORST_FIT)
    if spread.complete:
        return spread
    packed = _pack(order, targets, compat, BEST_FIT)
    return packed if packed.shortfall < spread.shortfall else spread


def place_vms(vms: Sequence[VMState], targets: Sequence[HostState]) -> Placement:
    """Place ``vms`` on ``targets`` by memory and CPU features (see the module docstring).

    The worst-fit pass if it places everything, else the better of the two passes.
    """
    return _place(vms, targets, _Compat())


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB ({n} bytes)"


def _xenapi_error(error: Sequence[str]) -> str:
    """``("VM_REQUIRES_SR", vm, sr)`` → ``VM_REQUIRES_SR(vm, sr)``, as errors.py prints."""
    return f"{error[0]}({', '.join(error[1:])})" if len(error) > 1 else error[0]


def _pool_blockers(
    snapshot: PoolSnapshot, h: HostState, master: HostState | None,
    candidates: Sequence[HostState],
) -> list[Blocker]:
    """Reasons that stop the whole plan, whatever the VMs."""
    out: list[Blocker] = []
    if not h.live:
        # why: XAPI cannot migrate off a dead host; HA restarts its VMs elsewhere
        out.append(Blocker("HOST_OFFLINE", f"{h.name} is not live: its VMs cannot be "
                           "migrated off it (HA restarts them elsewhere)"))
    if master is not None and master.ref != h.ref and not master.live:
        # why: every XAPI call goes through the master; a dead one cannot run any step
        out.append(Blocker("HOST_OFFLINE", f"pool master {master.name} is not live: "
                           "nothing can be carried out until the pool has a master again"))
    if master is not None and master.ref == h.ref:
        if snapshot.ha_enabled:
            # why: pool.designate_new_master fails with HA_IS_ENABLED while HA is on
            out.append(Blocker("HA_IS_ENABLED", f"{h.name} is the pool master and HA is "
                               "enabled: the master cannot be handed over; disable HA first"))
        if not candidates:
            # why: the master role may only go to an enabled, live host
            out.append(Blocker("NO_HOSTS_AVAILABLE", f"{h.name} is the pool master and no "
                               "other host is enabled and live to take the role"))
    return out


def _vm_blocker(
    vm: VMState, h: HostState, candidate_keys: set[str], compat: _Compat,
) -> Blocker | None:
    """Why ``vm`` cannot go to any candidate whatever the memory, or None if it might."""
    if vm.blocked:
        # why: XAPI said so (host.get_vms_which_prevent_evacuation), e.g. local storage
        return Blocker(vm.blocked[0], f"{vm.name} cannot leave {h.name}: "
                       f"{_xenapi_error(vm.blocked)}", vm.ref, vm.name)
    if not candidate_keys:
        # why: disabled hosts refuse VMs (HOST_DISABLED) and dead ones cannot run them
        return Blocker("NO_HOSTS_AVAILABLE", f"{vm.name} has nowhere to go: no other host "
                       "is enabled and live", vm.ref, vm.name)
    if not any(compat(key, vm.cpu_features) for key in candidate_keys):
        # why: a live migration needs every CPU feature the VM booted with
        return Blocker("VM_INCOMPATIBLE_WITH_THIS_HOST", f"{vm.name} cannot run on any other "
                       f"enabled host: none offers its boot CPU features {vm.cpu_features}",
                       vm.ref, vm.name)
    return None


def _capacity_blocker(vm: VMState, placement: Placement) -> Blocker:
    # why: XAPI checks free memory per target (HOST_NOT_ENOUGH_FREE_MEMORY [needed, available])
    return Blocker("HOST_NOT_ENOUGH_FREE_MEMORY", f"{vm.name} needs {_size(vm.memory)} free; "
                   "the most left on a compatible host after placing the others is "
                   f"{_size(placement.largest_left[vm.ref])}", vm.ref, vm.name)


def _steps(
    h: HostState, vms: Sequence[VMState], placement: Placement, names: dict[str, str], *,
    new_master: HostState | None, shutdown: bool,
) -> tuple[Step, ...]:
    """Master first (H may be rebooted later), then disable so nothing lands on H while
    it empties, the migrations largest first, the check, the optional shutdown."""
    steps: list[Step] = []
    if new_master is not None:
        steps.append(Step(StepKind.DESIGNATE_MASTER, new_master.ref, new_master.name))
    steps.append(Step(StepKind.DISABLE_HOST, h.ref, h.name))
    for vm in vms:
        target = placement.targets[vm.ref]
        steps.append(Step(StepKind.MIGRATE_VM, h.ref, h.name, vm=vm.ref, vm_name=vm.name,
                          target=target, target_name=names[target], memory=vm.memory))
    steps.append(Step(StepKind.VERIFY_EMPTY, h.ref, h.name))
    if shutdown:
        steps.append(Step(StepKind.SHUTDOWN_HOST, h.ref, h.name))
    return tuple(steps)


def _layout_after(
    before: dict[str, list[str]], h: HostState, vms: Sequence[VMState],
    placement: Placement, names: dict[str, str],
) -> dict[str, list[str]]:
    after = {name: list(vm_names) for name, vm_names in before.items()}
    after[h.name] = []
    for vm in vms:
        after[names[placement.targets[vm.ref]]].append(vm.name)
    return {name: sorted(vm_names) for name, vm_names in after.items()}


def plan_maintenance(snapshot: PoolSnapshot, host: str, *, shutdown: bool = False) -> ActionPlan:
    """Plan emptying ``host`` (a ref or a name) for maintenance; :class:`NotFound` if unknown.

    Always returns a plan; an infeasible one carries every blocker and changes nothing.
    """
    h = snapshot.host(host)
    if h is None:
        raise NotFound(f"no host {host!r} in pool {snapshot.name!r}")
    names = {x.ref: x.name for x in snapshot.hosts}
    master = next((x for x in snapshot.hosts if x.ref == snapshot.master), None)
    # why: a disabled host refuses VMs and the master role; a dead one can take neither
    candidates = [x for x in snapshot.hosts if x.ref != h.ref and x.enabled and x.live]
    vms = sorted(snapshot.vms_on(h.ref), key=_vm_order)
    compat = _Compat()
    candidate_keys = {x.cpu_features for x in candidates}

    blockers = _pool_blockers(snapshot, h, master, candidates)
    movable: list[VMState] = []
    for vm in vms:
        reason = _vm_blocker(vm, h, candidate_keys, compat)
        if reason is None:
            movable.append(vm)
        else:
            blockers.append(reason)
    placement = _place(movable, candidates, compat)
    blockers.extend(_capacity_blocker(vm, placement) for vm in placement.unplaced)

    before = snapshot.layout()
    master_before = master.name if master is not None else snapshot.master
    if blockers:
        return ActionPlan(
            GOAL, snapshot.name, h.ref, h.name, feasible=False, blockers=tuple(blockers),
            master_before=master_before, master_after=master_before,
            layout_before=before, layout_after={k: list(v) for k, v in before.items()},
            host_was_enabled=h.enabled,
        )
    new_master = None
    if master is not None and master.ref == h.ref:
        # why: the roomiest host after the moves has the most headroom for the master's work
        new_master = min(candidates, key=lambda c: (-placement.free_after[c.ref], c.name, c.ref))
    return ActionPlan(
        GOAL, snapshot.name, h.ref, h.name, feasible=True,
        steps=_steps(h, vms, placement, names, new_master=new_master, shutdown=shutdown),
        master_before=master_before,
        master_after=new_master.name if new_master is not None else master_before,
        layout_before=before, layout_after=_layout_after(before, h, vms, placement, names),
        host_was_enabled=h.enabled,
    )
