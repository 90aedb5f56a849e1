"""The ``poolwarden`` command: thin — parse, call the packages, print (DESIGN §5)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from poolwarden.cli import common
from poolwarden.cli.check import check_app
from poolwarden.cli.cluster import master_command, satellite_command
from poolwarden.cli.common import (
    EXIT_FAILED,
    InsecureOpt,
    JsonOpt,
    PasswordFileOpt,
    PasswordOpt,
    StoreOpt,
    UrlOpt,
    UserOpt,
    connect,
    emit_json,
    err,
    errors_to_exit,
    out,
)
from poolwarden.cli.downtime import downtime_app
from poolwarden.cli.incidents import incident_app
from poolwarden.cli.lab import lab_app
from poolwarden.cli.render import (
    LineProgress,
    RichProgress,
    outcome_report,
    plan_lines,
    pool_status_json,
    pool_table,
)
from poolwarden.cli.run import run_command
from poolwarden.cli.snmp import snmp_app
from poolwarden.cli.token import token_app
from poolwarden.cli.user import user_app
from poolwarden.cli.xescript import xescript_command
from poolwarden.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from poolwarden.hypervisor.base import PoolDriver
    from poolwarden.remediate.executor import ProgressSink
    from poolwarden.remediate.maintenance import MaintenanceOutcome
    from poolwarden.store.db import Store

app = typer.Typer(
    name="poolwarden", no_args_is_help=True, add_completion=False,
    help="Keeps XenServer / XCP-ng pools healthy: evacuates failing hosts before they fail.",
)
pool_app = typer.Typer(no_args_is_help=True, help="Read a pool; CPU levelling.")
host_app = typer.Typer(no_args_is_help=True, help="Act on one host of a pool.")
app.add_typer(pool_app, name="pool")
app.add_typer(host_app, name="host")
app.add_typer(lab_app, name="lab")
app.command("run")(run_command)
app.add_typer(snmp_app, name="snmp")
app.add_typer(incident_app, name="incident")
app.add_typer(downtime_app, name="downtime")
app.add_typer(check_app, name="check")
app.command("xescript")(xescript_command)
app.add_typer(token_app, name="token")
app.add_typer(user_app, name="user")
app.command("master")(master_command)
app.command("satellite")(satellite_command)


@pool_app.command("status")
def pool_status(url: UrlOpt, user: UserOpt = "root", password: PasswordOpt = None,
                password_file: PasswordFileOpt = None, insecure: InsecureOpt = False,
                as_json: JsonOpt = False) -> None:
    """Hosts (master, enabled, memory) and the VMs on each."""
    with errors_to_exit(as_json), connect(url, user, password, password_file,
                                          insecure) as driver:
        snap = driver.snapshot()
    if as_json:
        emit_json(pool_status_json(snap))
    else:
        out.print(pool_table(snap))


@pool_app.command("cpu-level")
def pool_cpu_level(
    keys: Annotated[list[str] | None, typer.Argument(
        help="CPU feature keys (dash-separated 32-bit hex words), one per host.")] = None,
    url: Annotated[str | None, typer.Option(
        "--url", envvar="POOLWARDEN_XAPI_URL",
        help="Read every host's CPU features from this pool instead.")] = None,
    user: UserOpt = "root", password: PasswordOpt = None,
    password_file: PasswordFileOpt = None, insecure: InsecureOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """The CPU feature mask common to all hosts (AND word by word), for pool levelling."""
    from poolwarden.tools.cpu_level import common_level

    with errors_to_exit(as_json):
        per_host: dict[str, str] = {}
        if url and keys:
            raise UsageError("give either KEYs or --url, not both")
        if url:
            with connect(url, user, password, password_file, insecure) as driver:
                per_host = driver.cpu_features()
        elif keys:
            per_host = {f"key{i + 1}": k for i, k in enumerate(keys)}
        else:
            raise UsageError("give at least one KEY, or --url to read them from a pool")
        level = common_level(per_host.values())
    if as_json:
        emit_json({"level": level, "hosts": per_host})
    else:
        for name, key in per_host.items():
            err.print(f"{name:>12}  {key}")
        out.print(level)


@host_app.command("maintenance")
def host_maintenance(
    host: Annotated[str, typer.Argument(help="Host name (name_label) or ref.")],
    url: UrlOpt, user: UserOpt = "root", password: PasswordOpt = None,
    password_file: PasswordFileOpt = None, insecure: InsecureOpt = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan, change nothing.")]
    = False,
    shutdown: Annotated[bool, typer.Option("--shutdown", help="Shut the host down at the end.")]
    = False,
    store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Hand the master role away, migrate the VMs off HOST, disable it (maintenance mode).

    Safe: nothing happens unless every VM has a place to go. Re-running after a crash
    finishes the interrupted job without repeating steps.
    """
    from poolwarden.remediate.maintenance import host_maintenance as run

    def act(driver: PoolDriver, db: Store, progress: ProgressSink | None) -> MaintenanceOutcome:
        return run(driver, db, host, shutdown=shutdown, dry_run=dry_run, progress=progress)

    _remediate(act, url, user, password, password_file, insecure, store, dry_run, as_json)


@host_app.command("enable")
def host_enable(
    host: Annotated[str, typer.Argument(help="Host name (name_label) or ref.")],
    url: UrlOpt, user: UserOpt = "root", password: PasswordOpt = None,
    password_file: PasswordFileOpt = None, insecure: InsecureOpt = False,
    restore: Annotated[bool, typer.Option(
        "--restore", help="Migrate back the VMs its last maintenance moved away.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan, change nothing.")]
    = False,
    store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Take HOST out of maintenance: enable it and clear the maintenance mark.

    --restore reads the VMs to bring back from the journal in --store (the one the
    maintenance was recorded in); those that no longer fit refuse the whole plan.
    """
    from poolwarden.remediate.maintenance import host_exit_maintenance as run

    def act(driver: PoolDriver, db: Store, progress: ProgressSink | None) -> MaintenanceOutcome:
        return run(driver, db, host, restore=restore, dry_run=dry_run, progress=progress)

    _remediate(act, url, user, password, password_file, insecure, store, dry_run, as_json)


def _remediate(act: Callable[[PoolDriver, Store, ProgressSink | None], MaintenanceOutcome],
               url: str, user: str, password: str | None, password_file: Path | None,
               insecure: bool, store: str | None, dry_run: bool, as_json: bool) -> None:
    """Open the store and the pool, run ``act`` with progress bars on a terminal, plain
    lines in a pipe, silence with --json or a dry run; report; exit 1 unless it went well."""
    from poolwarden.store.db import Store

    with errors_to_exit(as_json):
        db = Store.open(store or common.default_store_url())
        try:
            with connect(url, user, password, password_file, insecure) as driver:
                if as_json or dry_run:
                    outcome = act(driver, db, None)
                elif out.is_terminal:
                    with RichProgress(out) as progress:
                        outcome = act(driver, db, progress)
                else:
                    outcome = act(driver, db, LineProgress(out))
        finally:
            db.close()
    if as_json:
        emit_json(outcome.to_json())
    else:
        outcome_report(out, outcome)
    if not outcome.ok:
        raise typer.Exit(EXIT_FAILED)


@app.command("demo")
def demo(
    layout: Annotated[Path | None, typer.Option(
        "--layout", help="A lab layout YAML (default: the built-in 3-host pool).")] = None,
    as_json: JsonOpt = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the service's log.")]
    = False,
    serve: Annotated[int | None, typer.Option(
        "--serve", help="Keep the lab, the service and its API (127.0.0.1:PORT; 0: any "
        "free port) running after the scenario, until Ctrl-C.")] = None,
) -> None:
    """The overheating-host scenario on the lab: detect, hand over, evacuate, notify."""
    from poolwarden.cli.demo import run_demo

    with errors_to_exit(as_json):
        code = run_demo(layout, as_json, verbose, serve)
    raise typer.Exit(code)


__all__ = ["app", "main", "plan_lines"]


def main() -> None:
    app()
