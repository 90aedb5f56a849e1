"""The remediation journal: every step written before it starts and after it ends.

This is what makes remediation resumable: a process killed at any point leaves a record
of which steps finished, which one was running (and the hypervisor task following it),
and the exact plan that was decided. Callers get plain dataclasses, never ORM objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from poolwarden.errors import NotFound
from poolwarden.remediate.model import ActionPlan
from poolwarden.store.db import Store, now
from poolwarden.store.models import Remediation, RemediationStep

OPEN_STATUSES = ("planned", "running")


@dataclass(frozen=True, slots=True)
class StepRecord:
    seq: int
    kind: str
    title: str
    status: str
    task_ref: str
    detail: str
    started_at: float | None
    finished_at: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "name": self.kind, "title": self.title, "status": self.status,
            "detail": self.detail, "started": self.started_at, "finished": self.finished_at,
        }


@dataclass(frozen=True, slots=True)
class RemediationRecord:
    id: int
    pool: str
    host: str
    host_name: str
    goal: str
    status: str
    dry_run: bool
    plan: ActionPlan
    host_was_enabled: bool
    error: str
    created_at: float
    finished_at: float | None
    steps: tuple[StepRecord, ...]
    #: who asked: ``cli:user@host``, ``api:token``, ``web:user``, ``slack:…``, or the engine
    requested_by: str = ""


def _record(r: Remediation) -> RemediationRecord:
    return RemediationRecord(
        id=r.id, pool=r.pool, host=r.host, host_name=r.host_name, goal=r.goal,
        status=r.status, dry_run=r.dry_run, plan=ActionPlan.from_json(r.plan),
        host_was_enabled=r.host_was_enabled, error=r.error, created_at=r.created_at,
        finished_at=r.finished_at, requested_by=r.requested_by or "",
        steps=tuple(
            StepRecord(s.seq, s.kind, s.title, s.status, s.task_ref, s.detail,
                       s.started_at, s.finished_at)
            for s in r.steps
        ),
    )


class RemediationJournal:
    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, plan: ActionPlan, *, dry_run: bool, requested_by: str = "") -> int:
        """Record a decided plan and all its steps as pending, in one transaction."""
        t = now()
        status = "planned" if plan.feasible else "infeasible"
        with self.store.session() as s:
            r = Remediation(
                pool=plan.pool, host=plan.host, host_name=plan.host_name, goal=plan.goal,
                status=status, dry_run=dry_run, requested_by=requested_by,
                plan=plan.to_json(), host_was_enabled=plan.host_was_enabled, error="",
                created_at=t, updated_at=t,
                finished_at=None if plan.feasible else t,
            )
            r.steps = [
                RemediationStep(seq=i, kind=st.kind.value, title=st.title, status="pending",
                                task_ref="", detail="")
                for i, st in enumerate(plan.steps)
            ]
            s.add(r)
            s.flush()
            return r.id

    def get(self, rid: int) -> RemediationRecord:
        with self.store.session() as s:
            r = s.get(Remediation, rid)
            if r is None:
                raise NotFound(f"no remediation #{rid}")
            return _record(r)

    def open_for_pool(self, pool: str) -> RemediationRecord | None:
        """The unfinished (non dry-run) remediation of a pool, if a process died during it."""
        with self.store.session() as s:
            r = s.scalars(
                select(Remediation)
                .where(Remediation.pool == pool, Remediation.status.in_(OPEN_STATUSES),
                       Remediation.dry_run.is_(False))
                .order_by(Remediation.id)
            ).first()
            return _record(r) if r is not None else None

    def recent(self, pool: str | None = None, limit: int = 20) -> list[RemediationRecord]:
        with self.store.session() as s:
            q = select(Remediation).order_by(Remediation.id.desc()).limit(limit)
            if pool is not None:
                q = q.where(Remediation.pool == pool)
            return [_record(r) for r in s.scalars(q)]

    def _step(self, s: Any, rid: int, seq: int) -> RemediationStep:
        step = s.scalars(
            select(RemediationStep)
            .where(RemediationStep.remediation_id == rid, RemediationStep.seq == seq)
        ).one()
        assert isinstance(step, RemediationStep)
        return step

    def step_started(self, rid: int, seq: int) -> None:
        with self.store.session() as s:
            step = self._step(s, rid, seq)
            step.status, step.started_at = "running", step.started_at or now()
            r = s.get(Remediation, rid)
            assert r is not None
            r.status, r.updated_at = "running", now()

    def step_task(self, rid: int, seq: int, task_ref: str) -> None:
        with self.store.session() as s:
            self._step(s, rid, seq).task_ref = task_ref

    def step_finished(self, rid: int, seq: int, status: str, detail: str = "") -> None:
        with self.store.session() as s:
            step = self._step(s, rid, seq)
            step.status, step.detail, step.finished_at = status, detail, now()
            if step.started_at is None:
                step.started_at = step.finished_at

    def finish(self, rid: int, status: str, error: str = "") -> None:
        with self.store.session() as s:
            r = s.get(Remediation, rid)
            if r is None:
                raise NotFound(f"no remediation #{rid}")
            t = now()
            r.status, r.error, r.updated_at, r.finished_at = status, error, t, t
