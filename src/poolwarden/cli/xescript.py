"""``poolwarden xescript HOST SCRIPT [ARG ...]``: one vetted script on one host, journalled.

Settings come from ``--config poolwarden.yaml`` (``scripts:``, the host's address and SSH
port, ``store.url``) and/or from flags; a flag overrides the file. Without ``--config``,
``--address``, ``--scripts-dir``, ``--key-file`` and ``--known-hosts`` are required.

Exit codes: 0 the script ran and exited 0; 1 it failed, timed out, or the host refused
(key, host key, unreachable) or is not in the configuration; 2 the request itself was
refused (name, arguments) or the settings are incomplete.
"""

from __future__ import annotations

import asyncio
import getpass
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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

if TYPE_CHECKING:
    from poolwarden.config.models import Config, ScriptsConfig


def _who() -> str:
    """Who asked, for the journal: the local account and machine."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def _settings(cfg: Config, *, scripts_dir: Path | None, key_file: Path | None,
              known_hosts: Path | None, user: str | None, port: int | None,
              timeout: float | None) -> ScriptsConfig:
    """``scripts:`` of the file, each given flag overriding it; UsageError if incomplete."""
    from poolwarden.config.models import ScriptsConfig
    from poolwarden.errors import UsageError

    base = cfg.scripts
    if base is None:
        missing = [flag for flag, value in (("--scripts-dir", scripts_dir),
                                            ("--key-file", key_file),
                                            ("--known-hosts", known_hosts)) if value is None]
        if missing:
            raise UsageError(f"{', '.join(missing)} required (or --config with a scripts: "
                             "section)")
        base = ScriptsConfig()
    ssh = {k: v for k, v in (("user", user), ("key_file", key_file),
                             ("known_hosts", known_hosts), ("port", port)) if v is not None}
    top = {k: v for k, v in (("directory", scripts_dir), ("timeout", timeout))
           if v is not None}
    return ScriptsConfig.model_validate({**base.model_dump(), **top,
                                         "ssh": {**base.ssh.model_dump(), **ssh}})


def xescript_command(
    host: Annotated[str, typer.Argument(help="Host name (a configured host with --config).")],
    script: Annotated[str, typer.Argument(help="Script name in the scripts directory.")],
    args: Annotated[list[str] | None, typer.Argument(
        help="Arguments, checked against the script's '# poolwarden-args:' header.")] = None,
    *,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="poolwarden.yaml: scripts:, the host's address, the store.")
    ] = None,
    address: Annotated[str | None, typer.Option(
        "--address", help="Address sshd listens on [default with --config: the host's "
        "address, else its name].")] = None,
    scripts_dir: Annotated[Path | None, typer.Option(
        "--scripts-dir", help="The one directory scripts are taken from.")] = None,
    key_file: Annotated[Path | None, typer.Option(
        "--key-file", help="Private key (key authentication only).")] = None,
    known_hosts: Annotated[Path | None, typer.Option(
        "--known-hosts", help="known_hosts file that must hold the host's key.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="SSH user [root].")] = None,
    port: Annotated[int | None, typer.Option(
        "--port", min=1, max=65535, help="SSH port [22].")] = None,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", help="Seconds before the script is killed [300].")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a vetted XESCRIPT batch job on a pool host over SSH (every attempt is audited)."""
    from poolwarden.config.models import Config, load_config
    from poolwarden.errors import UsageError
    from poolwarden.scripts.service import ConfiguredScripts
    from poolwarden.store.db import Store

    with errors_to_exit(as_json):
        if timeout is not None and timeout <= 0:
            raise UsageError("--timeout must be positive")
        if config is None and address is None:
            raise UsageError("--address is required (or --config naming the host)")
        cfg = load_config(config) if config is not None else Config()
        scripts = _settings(cfg, scripts_dir=scripts_dir, key_file=key_file,
                            known_hosts=known_hosts, user=user, port=port, timeout=timeout)
        url = store or (cfg.store.url if config is not None else common.default_store_url())
        db = Store.open(url)
        try:
            runner = ConfiguredScripts(cfg.model_copy(update={"scripts": scripts}), db)
            result, run_id = asyncio.run(runner.run(host, script, args or [], _who(),
                                                    address=address, port=port))
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
            err.print(f"[bold red]timed out[/] after {scripts.timeout:g}s", markup=True)
        elif not result.ok:
            err.print(f"[bold red]exit status {result.exit_status}[/]", markup=True)
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)
