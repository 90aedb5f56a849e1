"""``poolwarden demo``: the lab, and the pool master put into maintenance, end to end.

The demo checks itself: it reads the pool back through XenAPI with a fresh session and
exits 0 only if the pool really is what the report says (host disabled and empty, master
moved, every VM where the report puts it) — or, for an infeasible plan, untouched.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from poolwarden.cli.common import EXIT_FAILED, EXIT_OK, emit_json, err, out
from poolwarden.cli.lab import default_layout
from poolwarden.cli.render import LineProgress, RichProgress, outcome_report, pool_table
from poolwarden.hypervisor.base import PoolSnapshot
from poolwarden.hypervisor.xenapi import XenAPIDriver
from poolwarden.lab import Lab, load_layout
from poolwarden.remediate.maintenance import MaintenanceOutcome, host_maintenance
from poolwarden.store.db import Store


def verify(o: MaintenanceOutcome, snap: PoolSnapshot) -> list[str]:
    """Differences between the report and the pool as read back; [] when they agree."""
    problems: list[str] = []
    host = snap.host(o.record.host_name)
    master = snap.host(snap.master)
    if snap.layout() != o.layout_after:
        problems.append(f"layout read back {snap.layout()} != reported {o.layout_after}")
    if master is None or master.name != o.master_after:
        problems.append(f"master is {master.name if master else '?'}, report says "
                        f"{o.master_after}")
    if host is None:
        return [*problems, f"host {o.record.host_name} vanished"]
    if o.record.status == "done":
        if host.enabled:
            problems.append(f"{host.name} is still enabled")
        if snap.vms_on(host.ref):
            problems.append(f"{host.name} still runs VMs")
    elif o.record.status == "infeasible" and (not host.enabled or o.layout_before !=
                                              snap.layout()):
        problems.append("an infeasible plan changed the pool")
    return problems


def run_demo(layout_path: Path | None, as_json: bool) -> int:
    site = load_layout(layout_path or default_layout())
    console = err if as_json else out
    with tempfile.TemporaryDirectory(prefix="poolwarden-demo-") as tmp, Lab(site) as lab:
        summary = lab.summary()
        console.print(f"[bold]lab[/]: pool {site.pool.name}, master {summary['master']}, "
                      f"{len(summary['xapi'])} hosts, XenAPI at "
                      f"{summary['xapi'][summary['master']]}")
        user, password = site.credentials.user, site.credentials.password
        # Connect through a pool member on purpose: the driver must follow HOST_IS_SLAVE.
        entry = next(u for n, u in summary["xapi"].items() if n != summary["master"]) \
            if len(summary["xapi"]) > 1 else summary["xapi"][summary["master"]]
        driver = XenAPIDriver(entry, user, password)
        store = Store.open(f"sqlite:///{tmp}/poolwarden.db")
        try:
            before = driver.snapshot()
            console.print(pool_table(before, "before"))
            target = summary["master"]
            console.print(f"\nPutting the pool master [bold]{target}[/] into maintenance…")
            started = time.time()
            if not as_json and out.is_terminal:
                with RichProgress(out) as progress:
                    outcome = host_maintenance(driver, store, target, progress=progress,
                                               requested_by="demo")
            else:
                outcome = host_maintenance(driver, store, target, requested_by="demo",
                                           progress=LineProgress(console))
        finally:
            driver.close()
            store.close()
        check = XenAPIDriver(summary["xapi"][lab.master_name], user, password)
        try:
            after = check.snapshot()
        finally:
            check.close()
        problems = verify(outcome, after)
        if as_json:
            emit_json(_summary(outcome, started, problems))
        else:
            outcome_report(out, outcome)
            out.print(pool_table(after, "after (read back through XenAPI)"))
            for p in problems:
                out.print(f"[red]verification failed:[/] {p}")
            if not problems:
                out.print("[green]verified[/]: the pool read back matches the report.")
    return EXIT_OK if not problems else EXIT_FAILED


def _summary(o: MaintenanceOutcome, started: float, problems: list[str]) -> dict[str, Any]:
    doc = o.to_json()
    doc.update({"started_at": started, "verified": not problems, "problems": problems})
    return doc
