"""``poolwarden xescript HOST SCRIPT [ARG ...]``: one vetted script on one host, journalled.

Exit codes: 0 the script ran and exited 0; 1 it failed, timed out, or the host refused
(key, host key, unreachable); 2 the request itself was refused (name, arguments).
"""

from __future__ import annotations

import asyncio
import getpass
import socket
from pathlib import Path
from typing import Annotated

import typer

from poolwarden.cli import common
from poolwarden.cli.common import (
    EXIT_FAILED,
    JsonOpt,
    StoreOpt,
    emit_json,
    err,
    errors_to_exit,
    out,
)


def _who() -> str:
    """Who asked, for the journal: the local account and machine."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def xescript_command(
    host: Annotated[str, typer.Argument(help="Host name, as recorded in the journal.")],
    script: Annotated[str, typer.Argument(help="Script name in --scripts-dir (no path).")],
    args: Annotated[list[str] | None, typer.Argument(
        help="Arguments, checked against the script's '# poolwarden-args:' header.")] = None,
    *,
    address: Annotated[str, typer.Option("--address", help="Address sshd listens on.")],
    scripts_dir: Annotated[Path, typer.Option(
        "--scripts-dir", help="The one directory scripts are taken from.")],
    key_file: Annotated[Path, typer.Option(
        "--key-file", help="Private key (key authentication only).")],
    known_hosts: Annotated[Path, typer.Option(
        "--known-hosts", help="known_hosts file that must hold the host's key.")],
    user: Annotated[str, typer.Option("--user", help="SSH user.")] = "root",
    port: Annotated[int, typer.Option("--port")] = 22,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds before the script "
                                           "is killed.")] = 300.0,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a vetted XESCRIPT batch job on a pool host over SSH (every attempt is audited)."""
    from poolwarden.errors import UsageError
    from poolwarden.scripts.audit import run_audited
    from poolwarden.scripts.catalog import ScriptCatalog
    from poolwarden.store.db import Store

    with errors_to_exit(as_json):
        if timeout <= 0:
            raise UsageError("--timeout must be positive")
        catalog = ScriptCatalog(scripts_dir)
        db = Store.open(store or common.default_store_url())
        try:
            result, run_id = asyncio.run(run_audited(
                db, catalog, who=_who(), host=host, address=address, port=port,
                script=script, args=args or [], user=user, key_file=key_file,
                known_hosts=known_hosts, timeout=timeout))
        finally:
            db.close()
    if as_json:
        emit_json({**result.to_json(), "audit_id": run_id})
    else:
        out.print(result.stdout, end="", markup=False, highlight=False, soft_wrap=True)
        if result.stderr:
            err.print(result.stderr, end="", markup=False, highlight=False, soft_wrap=True)
        for name, cut in (("stdout", result.stdout_truncated),
                          ("stderr", result.stderr_truncated)):
            if cut:
                err.print(f"({name} truncated)")
        if result.timed_out:
            err.print(f"[bold red]timed out[/] after {timeout:g}s", markup=True)
        elif not result.ok:
            err.print(f"[bold red]exit status {result.exit_status}[/]", markup=True)
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)
