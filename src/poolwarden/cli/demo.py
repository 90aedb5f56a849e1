"""``poolwarden demo``: render the overheating-host scenario (the logic is poolwarden.demo).

Exit 0 only when the pool read back through XenAPI is what the report says — including
"nothing changed" when the site could not absorb the host's VMs and a person was called.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from poolwarden.cli.common import EXIT_FAILED, EXIT_OK, emit_json, err, out
from poolwarden.cli.lab import default_layout
from poolwarden.cli.render import layout_table, pool_table
from poolwarden.demo import DemoResult, run_scenario, summary
from poolwarden.lab import load_layout


def _ts(t: float | None) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S.%f")[:-3] if t else "-"


def run_demo(layout_path: Path | None, as_json: bool, verbose: bool = False,
             serve: int | None = None) -> int:
    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR,
                        format="%(asctime)s %(levelname)s %(message)s")
    site = load_layout(layout_path or default_layout())
    console = err if as_json else out

    def ready(result: DemoResult) -> None:
        if as_json:
            emit_json(summary(result))
        else:
            render(out, result)
            if result.api:
                login = result.api["login"]
                out.print(f"\nAPI: {result.api['url']}  (admin token: {result.api['token']})"
                          f"\nDashboard: {result.api['ui']}  (user {login['user']}, "
                          f"password {login['password']})"
                          "\nCtrl-C stops the lab and the service.", markup=False,
                          soft_wrap=True)

    result = asyncio.run(run_scenario(site, lambda s: console.print(f"• {s}"), serve=serve,
                                      ready=ready))
    return EXIT_OK if not result.problems else EXIT_FAILED


def render(console: Console, r: DemoResult) -> None:
    rep = r.remediation
    if r.before is not None:
        console.print(pool_table(r.before, "before"))
    det = rep.get("detected") or {}
    console.print(f"\n[bold]Detected[/] {det.get('check')} on {det.get('host')} "
                  f"{det.get('state')} at {_ts(r.detected_at)} "
                  f"({(r.detected_at or r.fault_at) - r.fault_at:.1f} s after the fault)")
    if rep.get("feasible") is False:
        console.print("[bold red]Infeasible[/]: nothing was changed; a person was called.")
        for b in rep.get("blockers", []):
            console.print(f"  • [red]{b['code']}[/] {escape(b['message'])}")
    t = Table(title="remediation timeline (UTC)", title_justify="left")
    for col in ("#", "step", "status", "started", "took"):
        t.add_column(col)
    for i, s in enumerate(rep.get("steps", []), 1):
        took = f"{s['finished'] - s['started']:.2f}s" if s.get("finished") and s.get(
            "started") else "-"
        t.add_row(str(i), s["title"], s["status"], _ts(s.get("started")), took)
    console.print(t)
    console.print(layout_table("VMs per host", rep.get("before") or {}, rep.get("after") or {}))
    console.print(f"master: {rep.get('master_before')} → {rep.get('master_after')}   "
                  f"result: [bold]{rep.get('status')}[/]")
    for line in rep.get("todo") or []:
        console.print(f"  to do: {escape(line)}")
    n = Table(title="notifications sent", title_justify="left")
    for col in ("receiver", "channel", "severity", "subject", "status"):
        n.add_column(col)
    for rec in reversed(r.notifications):
        n.add_row(rec["receiver"], rec["channel"], rec["severity"], escape(rec["subject"]),
                  rec["status"])
    console.print(n)
    console.print(f"the SMTP sink received {len(r.mails)} email(s); the chat/SMS webhook "
                  f"received {len(r.hooks)} page(s):")
    for h in r.hooks:
        console.print(f"  [bold]page[/] ({h['type']}): {escape(str(h['title']))}")
    if r.psu_host:
        console.print(f"PSU failure on {r.psu_host}: warning emailed to the sysadmins, "
                      f"{r.psu_actions} action(s) taken")
    if r.after is not None:
        console.print(pool_table(r.after, "after (read back through XenAPI)"))
    for p in r.problems:
        console.print(f"[red]verification failed:[/] {p}")
    if not r.problems:
        console.print("[green]verified[/]: the pool read back matches the report.")
