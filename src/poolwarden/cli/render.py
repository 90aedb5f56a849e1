"""Rich rendering for humans: pool tables, plans, step timelines, migration progress."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from poolwarden.hypervisor.base import PoolSnapshot
from poolwarden.remediate.model import ActionPlan, Step, StepKind

if TYPE_CHECKING:
    from poolwarden.remediate.maintenance import MaintenanceOutcome

GIB = 1024**3
STATUS_STYLE = {"done": "green", "skipped": "cyan", "failed": "red", "running": "yellow",
                "pending": "dim", "planned": "blue", "rolled_back": "magenta",
                "infeasible": "red", "dry_run": "blue"}


def gib(n: int) -> str:
    return f"{n / GIB:.1f}"


def pool_status_json(snap: PoolSnapshot) -> dict[str, Any]:
    layout = snap.layout()
    return {
        "pool": snap.name,
        "master": next((h.name for h in snap.hosts if h.ref == snap.master), snap.master),
        "ha_enabled": snap.ha_enabled,
        "hosts": [
            {"name": h.name, "address": h.address, "master": h.ref == snap.master,
             "enabled": h.enabled, "live": h.live, "memory_total": h.memory_total,
             "memory_free": h.memory_free, "cpu_features": h.cpu_features,
             "vms": layout[h.name]}
            for h in snap.hosts
        ],
    }


def pool_table(snap: PoolSnapshot, title: str | None = None) -> Table:
    layout = snap.layout()
    t = Table(title=title or f"pool {snap.name}", title_justify="left")
    t.add_column("host")
    t.add_column("role")
    t.add_column("state")
    t.add_column("free / total GiB", justify="right")
    t.add_column("VMs")
    for h in snap.hosts:
        state = ("[green]enabled[/]" if h.enabled else "[yellow]disabled[/]") if h.live \
            else "[red]down[/]"
        t.add_row(h.name, "[bold]master[/]" if h.ref == snap.master else "member", state,
                  f"{gib(h.memory_free)} / {gib(h.memory_total)}",
                  ", ".join(layout[h.name]) or "-")
    return t


def layout_table(title: str, before: dict[str, list[str]],
                 after: dict[str, list[str]]) -> Table:
    t = Table(title=title, title_justify="left")
    t.add_column("host")
    t.add_column("before")
    t.add_column("after")
    for host in sorted(set(before) | set(after)):
        t.add_row(host, ", ".join(before.get(host, [])) or "-",
                  ", ".join(after.get(host, [])) or "-")
    return t


def plan_lines(plan: ActionPlan) -> list[str]:
    if not plan.feasible:
        lines = [f"[bold red]Infeasible[/]: maintenance of {plan.host_name} would not "
                 "complete; nothing was changed."]
        lines += [f"  • [red]{b.code}[/] {b.message}" for b in plan.blockers]
        return lines
    return [f"  {i + 1}. {s.title}" for i, s in enumerate(plan.steps)]


def _ts(t: float | None) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S.%f")[:-3] if t else "-"


def outcome_report(console: Console, o: MaintenanceOutcome) -> None:
    r = o.record
    if o.resumed is not None:
        console.print(f"Finished remediation #{o.resumed.id} that an earlier run left "
                      f"half done ([bold]{o.resumed.status}[/]).")
    what = "Leaving maintenance" if r.goal == "exit_maintenance" else "Maintenance"
    console.print(f"\n[bold]{what} of {r.host_name}[/] in pool {r.pool} "
                  f"(remediation #{r.id}{', dry run' if r.dry_run else ''})")
    for line in plan_lines(r.plan):
        console.print(line)
    if not r.dry_run and r.plan.feasible:
        t = Table(title="timeline (UTC)", title_justify="left")
        for col in ("#", "step", "status", "started", "finished", "detail"):
            t.add_column(col)
        for s in r.steps:
            style = STATUS_STYLE.get(s.status, "")
            dur = f" ({s.finished_at - s.started_at:.1f}s)" if s.finished_at and s.started_at \
                else ""
            t.add_row(str(s.seq + 1), s.title, f"[{style}]{s.status}[/]", _ts(s.started_at),
                      _ts(s.finished_at) + dur, s.detail)
        console.print(t)
    console.print(layout_table("VMs per host", o.layout_before, o.layout_after))
    console.print(f"master: {o.master_before} → {o.master_after}")
    style = STATUS_STYLE.get(r.status, "")
    console.print(f"result: [{style} bold]{r.status}[/]" + (f" — {r.error}" if r.error else ""))


class RichProgress:
    """A ProgressSink drawing one line per step, with a bar for each migration."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(), console=console, transient=False,
        )
        self.tasks: dict[int, TaskID] = {}

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.progress.stop()

    def step_started(self, seq: int, step: Step) -> None:
        if seq not in self.tasks:
            total = 1.0
            self.tasks[seq] = self.progress.add_task(step.title, total=total)

    def step_progress(self, seq: int, step: Step, fraction: float) -> None:
        if seq in self.tasks:
            self.progress.update(self.tasks[seq], completed=min(max(fraction, 0.0), 1.0))

    def step_finished(self, seq: int, step: Step, status: str, detail: str) -> None:
        self.step_started(seq, step)
        style = STATUS_STYLE.get(status, "")
        label = step.title if step.kind is StepKind.MIGRATE_VM or status == "done" \
            else f"{step.title} ({detail or status})"
        self.progress.update(self.tasks[seq], completed=1.0,
                             description=f"[{style}]{label}[/]")


class LineProgress:
    """A ProgressSink for pipes and logs: one plain line per finished step."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def step_started(self, seq: int, step: Step) -> None:
        pass

    def step_progress(self, seq: int, step: Step, fraction: float) -> None:
        pass

    def step_finished(self, seq: int, step: Step, status: str, detail: str) -> None:
        self.console.print(f"step {seq + 1}: {step.title}: {status}" +
                           (f" ({detail})" if detail else ""))
