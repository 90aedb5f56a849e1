"""``poolwarden user``: the people who log in to the dashboard.

Passwords come from ``--password-file`` (first line), else are asked twice on a terminal,
else (a script, a pipe) are generated and printed once on stdout. They are never taken
from argv, where every user of the machine could read them. The store keeps a salted
scrypt hash only (``api.users``).
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.table import Table

from poolwarden.cli import common
from poolwarden.cli.common import JsonOpt, StoreOpt, emit_json, err, errors_to_exit, out
from poolwarden.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from poolwarden.api.users import UserRecord
    from poolwarden.store.db import Store

user_app = typer.Typer(no_args_is_help=True,
                       help="Dashboard users: create, list, disable, enable, passwd, role.")

NameArg = Annotated[str, typer.Argument(help="The user name (lower case; a-z 0-9 . _ @ -).")]
PasswordFile = Annotated[Path | None, typer.Option(
    "--password-file", help="Read the password from this file's first line.")]
T = TypeVar("T")


@contextmanager
def _store(url: str | None) -> Iterator[Store]:
    from poolwarden.store.db import Store

    db = Store.open(url or common.default_store_url())
    try:
        yield db
    finally:
        db.close()


def _password(password_file: Path | None) -> tuple[str, bool]:
    """The new password and whether it was generated (then it must be shown once)."""
    from poolwarden.api.users import generate_password

    if password_file is not None:
        try:
            return password_file.read_text(encoding="utf-8").splitlines()[0], False
        except (OSError, IndexError) as exc:
            raise ConfigError("cannot read the password", file=str(password_file)) from exc
    if sys.stdin.isatty():
        first = getpass.getpass("New password: ")
        if getpass.getpass("Again: ") != first:
            raise UsageError("the two passwords differ")
        return first, False
    return generate_password(), True


def _run(store: str | None, as_json: bool, action: Callable[[Store], T]) -> T:
    with errors_to_exit(as_json), _store(store) as db:
        return action(db)


def _show_password(password: str, generated: bool, doc: dict[str, object],
                   as_json: bool, what: str) -> None:
    if as_json:
        emit_json({**doc, **({"password": password} if generated else {})})
        return
    err.print(what, markup=False)
    if generated:
        err.print("generated password (store it now, it is not shown again):", markup=False)
        out.print(password, markup=False, soft_wrap=True)


@user_app.command("create")
def user_create(
    name: NameArg,
    role: Annotated[str, typer.Option("--role", help="viewer | operator | admin")],
    password_file: PasswordFile = None, store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Create a user. Without --password-file: asked twice on a terminal, else generated
    and printed once."""
    from poolwarden.api.users import check_password_policy, create_user

    def create(db: Store) -> tuple[dict[str, object], str, bool]:
        password, generated = _password(password_file)
        check_password_policy(password)
        return create_user(db, name, role, password).to_json(), password, generated

    doc, password, generated = _run(store, as_json, create)
    _show_password(password, generated, doc, as_json,
                   f"dashboard user {doc['name']} created ({doc['role']})")


def _when(t: float | None) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M") if t else "-"


@user_app.command("list")
def user_list(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Every user: role, created, disabled, live sessions, last seen."""
    from poolwarden.api.users import list_users

    users = _run(store, as_json, list_users)
    if as_json:
        emit_json([u.to_json() for u in users])
        return
    table = Table(title="dashboard users", title_justify="left")
    for col in ("name", "role", "state", "sessions", "last seen (UTC)"):
        table.add_column(col)
    for u in users:
        table.add_row(u.name, u.role, "disabled" if u.disabled_at else "enabled",
                      str(u.sessions), _when(u.last_seen))
    out.print(table)


def _change(store: str | None, as_json: bool, what: str,
            action: Callable[[Store], UserRecord]) -> None:
    record = _run(store, as_json, action)
    if as_json:
        emit_json(record.to_json())
    else:
        err.print(f"dashboard user {record.name}: {what}", markup=False)


@user_app.command("disable")
def user_disable(name: NameArg, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Stop a user from logging in and end their sessions (the row stays for the audit)."""
    from poolwarden.api.users import set_disabled

    _change(store, as_json, "disabled, sessions ended",
            lambda db: set_disabled(db, name, True))


@user_app.command("enable")
def user_enable(name: NameArg, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Let a disabled user log in again."""
    from poolwarden.api.users import set_disabled

    _change(store, as_json, "enabled", lambda db: set_disabled(db, name, False))


@user_app.command("role")
def user_role(name: NameArg,
              role: Annotated[str, typer.Argument(help="viewer | operator | admin")],
              store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Change a user's role; their sessions end (no page keeps the old rights)."""
    from poolwarden.api.users import set_role

    _change(store, as_json, f"role {role}, sessions ended",
            lambda db: set_role(db, name, role))


@user_app.command("passwd")
def user_passwd(name: NameArg, password_file: PasswordFile = None, store: StoreOpt = None,
                as_json: JsonOpt = False) -> None:
    """Set a new password (same sources as create); the user's sessions end."""
    from poolwarden.api.users import check_password_policy, set_password

    def change(db: Store) -> tuple[dict[str, object], str, bool]:
        password, generated = _password(password_file)
        check_password_policy(password)
        return set_password(db, name, password).to_json(), password, generated

    doc, password, generated = _run(store, as_json, change)
    _show_password(password, generated, doc, as_json,
                   f"dashboard user {doc['name']}: password changed, sessions ended")
