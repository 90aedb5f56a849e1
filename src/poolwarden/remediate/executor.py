"""Carry out a journaled plan, step by step, so that a crash at any point is recoverable.

Every step is *idempotent by looking first*: before acting it reads the pool and, when
the goal of the step already holds (the host is already master, the VM already left), it
records the step as done without acting. Together with the journal (each step written
before and after, and the hypervisor task of a migration recorded as soon as it exists)
this gives "finish the job, repeat nothing" after a kill -9:

* a step journaled as done is never run again;
* a migration whose task was recorded is re-attached to, not restarted;
* a migration started but not yet recorded shows up as OTHER_OPERATION_IN_PROGRESS or as
  a VM that already left: both end in "done" without a second migration.

On failure, what is safe is rolled back: a host we disabled is enabled again if no VM has
moved yet (the pool is exactly as before, but for a master hand-over, which is harmless);
otherwise the host stays disabled and the report says precisely which steps ran.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from poolwarden.errors import HypervisorError, PoolwardenError
from poolwarden.hypervisor.base import PoolDriver, TaskStatus
from poolwarden.remediate.model import Step, StepKind
from poolwarden.store.journal import RemediationJournal, RemediationRecord

DONE, SKIPPED, FAILED = "done", "skipped", "failed"
BUSY = "OTHER_OPERATION_IN_PROGRESS"


class ProgressSink(Protocol):
    """What a UI needs to follow an execution (the CLI draws rich progress bars)."""

    def step_started(self, seq: int, step: Step) -> None: ...

    def step_progress(self, seq: int, step: Step, fraction: float) -> None: ...

    def step_finished(self, seq: int, step: Step, status: str, detail: str) -> None: ...


class NoProgress:
    def step_started(self, seq: int, step: Step) -> None:
        pass

    def step_progress(self, seq: int, step: Step, fraction: float) -> None:
        pass

    def step_finished(self, seq: int, step: Step, status: str, detail: str) -> None:
        pass


class StepFailed(PoolwardenError):
    """A step could not reach its goal; the message says why."""


@dataclass
class ExecutorSettings:
    poll_interval: float = 0.2
    max_parallel_migrations: int = 2  # as Xen Orchestra's load balancer: gentle on the network
    migration_timeout: float = 3600.0
    transient_retries: int = 5
    retry_delay: float = 0.5


@dataclass
class _Inflight:
    seq: int
    step: Step
    #: the task we follow; "" when following a migration someone else (our previous,
    #: killed self) started, which we only see through the VM's location
    task: str
    started: float = field(default_factory=time.monotonic)


class Executor:
    """Runs the pending steps of one journaled remediation."""

    def __init__(self, driver: PoolDriver, journal: RemediationJournal, *,
                 heartbeat: Callable[[], None] = lambda: None,
                 progress: ProgressSink | None = None,
                 settings: ExecutorSettings | None = None) -> None:
        self.driver, self.journal, self.heartbeat = driver, journal, heartbeat
        self.progress = progress or NoProgress()
        self.settings = settings or ExecutorSettings()

    # -- the run ------------------------------------------------------------------------
    def run(self, rid: int) -> RemediationRecord:
        """Execute (or resume) remediation ``rid``; returns its final journal record."""
        rec = self.journal.get(rid)
        steps = rec.plan.steps
        pending = [i for i, s in enumerate(rec.steps) if s.status not in (DONE, SKIPPED)]
        try:
            i = 0
            while i < len(pending):
                seq = pending[i]
                if steps[seq].kind is StepKind.MIGRATE_VM:
                    batch = [s for s in pending[i:] if steps[s].kind is StepKind.MIGRATE_VM]
                    self._migrate(rec, batch)
                    i += len(batch)
                else:
                    self._single(rec, seq)
                    i += 1
        except PoolwardenError as exc:
            return self._fail(rid, str(exc))
        self.journal.finish(rid, DONE)
        return self.journal.get(rid)

    def _fail(self, rid: int, error: str) -> RemediationRecord:
        rec = self.journal.get(rid)
        moved = any(s.kind == StepKind.MIGRATE_VM and s.status == DONE for s in rec.steps)
        disabled = any(s.kind == StepKind.DISABLE_HOST and s.status == DONE for s in rec.steps)
        if disabled and not moved and rec.host_was_enabled:
            try:
                self.driver.enable_host(rec.host)
            except PoolwardenError as exc:
                self.journal.finish(rid, FAILED, f"{error}; re-enabling the host failed: {exc}")
                return self.journal.get(rid)
            self.journal.finish(rid, "rolled_back",
                                f"{error}; nothing had moved, so {rec.host_name} was re-enabled")
        else:
            self.journal.finish(rid, FAILED, error)
        return self.journal.get(rid)

    # -- one step at a time -------------------------------------------------------------
    def _single(self, rec: RemediationRecord, seq: int) -> None:
        step = rec.plan.steps[seq]
        self.heartbeat()
        self.journal.step_started(rec.id, seq)
        self.progress.step_started(seq, step)
        try:
            status, detail = self._with_retries(lambda: self._do(step))
        except PoolwardenError as exc:
            self.journal.step_finished(rec.id, seq, FAILED, str(exc))
            self.progress.step_finished(seq, step, FAILED, str(exc))
            raise StepFailed(f"step {seq + 1} ({step.title}) failed: {exc}") from exc
        self.journal.step_finished(rec.id, seq, status, detail)
        self.progress.step_finished(seq, step, status, detail)

    def _with_retries(self, fn: Callable[[], tuple[str, str]]) -> tuple[str, str]:
        for attempt in range(self.settings.transient_retries + 1):
            try:
                return fn()
            except PoolwardenError as exc:
                if not exc.retryable or attempt == self.settings.transient_retries:
                    raise
                self.heartbeat()
                time.sleep(self.settings.retry_delay * (2**attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _do(self, step: Step) -> tuple[str, str]:
        snap = self.driver.snapshot()
        host = snap.host(step.host)
        match step.kind:
            case StepKind.DESIGNATE_MASTER:
                if snap.master == step.host:
                    return SKIPPED, f"{step.host_name} is already the master"
                self.driver.designate_master(step.host)
                if self.driver.snapshot().master != step.host:
                    raise StepFailed(f"{step.host_name} did not become master")
                return DONE, ""
            case StepKind.DISABLE_HOST:
                was = "already disabled" if host is not None and not host.enabled else ""
                self.driver.disable_host(step.host)  # idempotent; also sets the flag
                return DONE, was
            case StepKind.VERIFY_EMPTY:
                left = [v.name for v in snap.vms_on(step.host)]
                if left:
                    raise StepFailed(f"still running on {step.host_name}: {', '.join(left)}")
                return DONE, ""
            case StepKind.SHUTDOWN_HOST:
                if host is not None and not host.live:
                    return SKIPPED, f"{step.host_name} is already down"
                self.driver.shutdown_host(step.host)
                return DONE, ""
            case StepKind.ENABLE_HOST:
                if host is not None and not host.live:
                    raise StepFailed(f"{step.host_name} is not running")
                was = "was already enabled" if host is not None and host.enabled else ""
                self.driver.enable_host(step.host)  # idempotent; also clears the flag
                return DONE, was
            case StepKind.MIGRATE_VM:  # pragma: no cover - handled by _migrate
                raise AssertionError("migrations run in batches")

    # -- migrations, a few at a time ----------------------------------------------------
    def _migrate(self, rec: RemediationRecord, seqs: list[int]) -> None:
        queue = list(seqs)
        inflight: list[_Inflight] = []
        failures: list[str] = []
        by_seq = {s.seq: s for s in rec.steps}
        while queue or inflight:
            self.heartbeat()
            while queue and not failures and len(inflight) < self.settings.max_parallel_migrations:
                seq = queue.pop(0)
                flight = self._start_migration(rec, seq, by_seq[seq].task_ref)
                if flight is not None:
                    inflight.append(flight)
            if failures and not inflight:
                break
            if inflight:
                time.sleep(self.settings.poll_interval)
            for f in list(inflight):
                outcome = self._poll(rec, f)
                if outcome is not None:
                    inflight.remove(f)
                    if outcome:
                        failures.append(outcome)
        if failures:
            raise StepFailed("; ".join(failures))

    def _start_migration(self, rec: RemediationRecord, seq: int,
                         task_ref: str) -> _Inflight | None:
        """Start (or re-attach to) one migration; None when the step is already settled."""
        step = rec.plan.steps[seq]
        assert step.vm is not None
        assert step.target is not None
        self.journal.step_started(rec.id, seq)
        self.progress.step_started(seq, step)
        if task_ref:  # we crashed while this migration ran: follow the same task
            return _Inflight(seq, step, task_ref)
        if self._vm_left(step):
            self._settle(rec, seq, step, SKIPPED, "the VM had already left the host")
            return None
        for attempt in range(self.settings.transient_retries + 1):
            try:
                task = self.driver.start_migration(step.vm, step.target)
            except HypervisorError as exc:
                if exc.code == BUSY:
                    return _Inflight(seq, step, "")  # see _poll: follow the VM instead
                if exc.retryable and attempt < self.settings.transient_retries:
                    time.sleep(self.settings.retry_delay * (2**attempt))
                    continue
                self._settle(rec, seq, step, FAILED, str(exc))
                raise StepFailed(f"{step.title}: {exc}") from exc
            self.journal.step_task(rec.id, seq, task)
            return _Inflight(seq, step, task)
        return None  # pragma: no cover

    def _poll(self, rec: RemediationRecord, f: _Inflight) -> str | None:
        """None while running; "" when done; an error message when failed."""
        if time.monotonic() - f.started > self.settings.migration_timeout:
            self._settle(rec, f.seq, f.step, FAILED, "timed out")
            return f"{f.step.title}: timed out"
        if not f.task:
            return self._poll_foreign(rec, f)
        try:
            info = self.driver.task(f.task)
        except HypervisorError as exc:
            if exc.code != "HANDLE_INVALID":
                raise
            # The task is gone (XAPI restarted, or it was destroyed): the VM tells the truth.
            if self._vm_left(f.step):
                self._settle(rec, f.seq, f.step, DONE, "task gone; the VM is on its new host")
                return ""
            self._settle(rec, f.seq, f.step, FAILED, "task vanished and the VM did not move")
            return f"{f.step.title}: task vanished"
        if info.status is TaskStatus.PENDING:
            self.progress.step_progress(f.seq, f.step, info.progress)
            return None
        self.driver.forget_task(f.task)
        if info.status is TaskStatus.SUCCESS:
            self._settle(rec, f.seq, f.step, DONE, "")
            return ""
        if info.error[:1] == (BUSY,):
            # XAPI checks allowed operations inside an Async task: a migration of this VM
            # started by our killed predecessor (before it could journal the task) is still
            # running. Follow the VM instead of starting a second migration.
            f.task = ""
            return self._poll_foreign(rec, f)
        err = ", ".join(info.error) or info.status.value
        self._settle(rec, f.seq, f.step, FAILED, err)
        return f"{f.step.title}: {err}"

    def _poll_foreign(self, rec: RemediationRecord, f: _Inflight) -> str | None:
        if not self._vm_left(f.step):
            return None
        self._settle(rec, f.seq, f.step, DONE,
                     "completed by a migration started before a restart")
        return ""

    def _vm_left(self, step: Step) -> bool:
        assert step.vm is not None
        return self.driver.vm_host(step.vm) != step.host

    def _settle(self, rec: RemediationRecord, seq: int, step: Step, status: str,
                detail: str) -> None:
        self.journal.step_finished(rec.id, seq, status, detail)
        self.progress.step_finished(seq, step, status, detail)
