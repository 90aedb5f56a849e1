"""Plans as data: what the planner produces and the executor journals.

A plan is either *feasible* (an ordered tuple of steps) or *infeasible* (no steps, and a
:class:`Blocker` for every reason). Plans serialise to plain JSON for the journal, so a
restarted process runs exactly the plan that was decided, not a re-plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class StepKind(StrEnum):
    DESIGNATE_MASTER = "designate_master"  # host = the new master
    DISABLE_HOST = "disable_host"  # host = the host going into maintenance
    MIGRATE_VM = "migrate_vm"  # vm moves from host to target
    VERIFY_EMPTY = "verify_empty"  # host runs no VM any more
    SHUTDOWN_HOST = "shutdown_host"  # optional last step
    ENABLE_HOST = "enable_host"  # leaving maintenance: host = the host coming back


@dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    host: str  # host ref the step acts on
    host_name: str
    vm: str | None = None
    vm_name: str | None = None
    target: str | None = None  # migration target host ref
    target_name: str | None = None
    memory: int = 0  # bytes moved by a migration (for progress and timing estimates)

    @property
    def title(self) -> str:
        match self.kind:
            case StepKind.DESIGNATE_MASTER:
                return f"designate {self.host_name} as pool master"
            case StepKind.DISABLE_HOST:
                return f"disable {self.host_name} (maintenance mode)"
            case StepKind.MIGRATE_VM:
                return f"migrate {self.vm_name} from {self.host_name} to {self.target_name}"
            case StepKind.VERIFY_EMPTY:
                return f"verify no VM runs on {self.host_name}"
            case StepKind.SHUTDOWN_HOST:
                return f"shut down {self.host_name}"
            case StepKind.ENABLE_HOST:
                return f"enable {self.host_name} (leave maintenance)"
        raise AssertionError(self.kind)  # pragma: no cover

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value, "host": self.host, "host_name": self.host_name,
            "vm": self.vm, "vm_name": self.vm_name, "target": self.target,
            "target_name": self.target_name, "memory": self.memory,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Step:
        return cls(**{**d, "kind": StepKind(d["kind"])})


@dataclass(frozen=True, slots=True)
class Blocker:
    """One reason a plan cannot be carried out, in XenAPI's words where there are some."""

    code: str  # e.g. VM_REQUIRES_SR, HOST_NOT_ENOUGH_FREE_MEMORY, NO_HOSTS_AVAILABLE
    message: str
    vm: str | None = None
    vm_name: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "vm": self.vm,
                "vm_name": self.vm_name}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Blocker:
        return cls(**d)


@dataclass(frozen=True, slots=True)
class ActionPlan:
    goal: str  # "maintenance" or "exit_maintenance"
    pool: str  # pool name
    host: str  # host ref the plan is about
    host_name: str
    feasible: bool
    steps: tuple[Step, ...] = ()
    blockers: tuple[Blocker, ...] = ()
    master_before: str = ""  # host name
    master_after: str = ""  # host name
    #: host name → VM names, before and as planned after
    layout_before: dict[str, list[str]] = field(default_factory=dict)
    layout_after: dict[str, list[str]] = field(default_factory=dict)
    #: ``host.enabled`` when planned: a rollback re-enables the host only if we disabled it
    host_was_enabled: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "goal": self.goal, "pool": self.pool, "host": self.host,
            "host_name": self.host_name, "feasible": self.feasible,
            "steps": [s.to_json() for s in self.steps],
            "blockers": [b.to_json() for b in self.blockers],
            "master_before": self.master_before, "master_after": self.master_after,
            "layout_before": self.layout_before, "layout_after": self.layout_after,
            "host_was_enabled": self.host_was_enabled,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ActionPlan:
        return cls(**{
            **d,
            "steps": tuple(Step.from_json(s) for s in d["steps"]),
            "blockers": tuple(Blocker.from_json(b) for b in d["blockers"]),
        })
