"""What every command shares: exit codes, JSON output, errors, connection options.

Exit codes (DESIGN §5): 0 done, 1 the operation failed or was refused, 2 usage or
configuration error. With ``--json`` stdout carries exactly one JSON document (errors
included, as ``{"error": {...}}``) and everything for humans goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console

from poolwarden.errors import ConfigError, PoolwardenError, UsageError
from poolwarden.hypervisor.xenapi import XenAPIDriver, connect_with_retry

if TYPE_CHECKING:
    from poolwarden.store.db import Store

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
UrlOpt = Annotated[str, typer.Option(
    "--url", envvar="POOLWARDEN_XAPI_URL",
    help="URL of any host of the pool (pool members redirect to the master).")]
UserOpt = Annotated[str, typer.Option("--user", envvar="POOLWARDEN_XAPI_USER")]
PasswordOpt = Annotated[str | None, typer.Option(
    "--password", envvar="POOLWARDEN_XAPI_PASSWORD", show_envvar=True,
    help="Prefer the environment variable or --password-file: argv is visible to all users.")]
PasswordFileOpt = Annotated[Path | None, typer.Option(
    "--password-file", help="File holding the password (first line).")]
InsecureOpt = Annotated[bool, typer.Option(
    "--insecure", help="Do not verify the XAPI TLS certificate (self-signed default certs).")]


def default_store_url() -> str:
    """Where the CLI journals remediations unless told otherwise (XDG state dir)."""
    env = os.environ.get("POOLWARDEN_STORE")
    if env:
        return env
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return f"sqlite:///{base / 'poolwarden' / 'poolwarden.db'}"


StoreOpt = Annotated[str | None, typer.Option(
    "--store", help="SQLAlchemy URL of the journal [default: $POOLWARDEN_STORE or "
    "sqlite:///$XDG_STATE_HOME/poolwarden/poolwarden.db]")]


@contextmanager
def open_store(url: str | None) -> Iterator[Store]:
    """The store of ``--store`` (else the default), closed on the way out."""
    from poolwarden.store.db import Store

    db = Store.open(url or default_store_url())
    try:
        yield db
    finally:
        db.close()


def author(given: str | None) -> str:
    """Who acts: ``--author``, else ``cli:user@host``."""
    from poolwarden.remediate.maintenance import who

    return given or who()


def utc(ts: float | None) -> str:
    """An epoch time as people read it in a table (UTC), or "-"."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def read_password(password: str | None, password_file: Path | None) -> str:
    if password_file is not None:
        try:
            return password_file.read_text(encoding="utf-8").splitlines()[0]
        except (OSError, IndexError) as exc:
            raise ConfigError("cannot read the password", file=str(password_file)) from exc
    if password is None:
        raise UsageError("no password: set POOLWARDEN_XAPI_PASSWORD or use --password-file")
    return password


def connect(url: str, user: str, password: str | None, password_file: Path | None,
            insecure: bool) -> XenAPIDriver:
    secret = read_password(password, password_file)
    return connect_with_retry(
        lambda: XenAPIDriver(url, user, secret, verify_tls=not insecure))


def emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def fail(message: str, code: int, as_json: bool, kind: str = "error") -> NoReturn:
    if as_json:
        emit_json({"error": {"type": kind, "message": message}})
    else:
        err.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def errors_to_exit(as_json: bool) -> Iterator[None]:
    """Turn our exceptions into a message and the contract's exit code."""
    try:
        yield
    except (ConfigError, UsageError) as exc:
        fail(str(exc), EXIT_USAGE, as_json, type(exc).__name__)
    except PoolwardenError as exc:
        hint = " (temporary: try again)" if exc.retryable else ""
        fail(f"{exc}{hint}", EXIT_FAILED, as_json, type(exc).__name__)

