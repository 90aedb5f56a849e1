"""``poolwarden downtime``: schedule, list and cancel planned work on a host.

A downtime covers a host's checks (or those matching ``--check``, a case-sensitive glob)
from a start to an end; meanwhile the notifier holds back their alerts. Checks,
incidents and remediation go on (see ``store.downtimes``). Cancelling keeps the record,
signed like every action (``cli:user@host`` unless told).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from poolwarden.cli import common
from poolwarden.cli.common import JsonOpt, StoreOpt, emit_json, errors_to_exit, out
from poolwarden.errors import UsageError

if TYPE_CHECKING:
    from poolwarden.store.downtimes import DowntimeRecord, Downtimes

downtime_app = typer.Typer(
    no_args_is_help=True,
    help="Scheduled downtimes: planned work during which a host's alerts notify nobody.")

AuthorOpt = Annotated[str | None, typer.Option(
    "--author", help="Who acts (default: cli:USER@HOST).")]
_COLOURS = {"active": "yellow", "scheduled": "cyan", "ended": "dim", "cancelled": "dim"}
_ISO_HELP = "ISO-8601 time, e.g. 2025-06-01T22:00 or 2025-06-01T22:00+02:00 (UTC unless " \
            "it has an offset)"


@contextmanager
def _downtimes(store: str | None) -> Iterator[Downtimes]:
    from poolwarden.store.downtimes import Downtimes

    with common.open_store(store) as db:
        yield Downtimes(db)


def _instant(option: str, value: str) -> float:
    """An ISO-8601 time as epoch seconds; naive times are UTC."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise UsageError(f"{option}: not an ISO-8601 time: {value!r} "
                         "(e.g. 2025-06-01T22:00, UTC unless it has an offset)") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _state(d: DowntimeRecord, t: float) -> str:
    return str(d.to_json(t)["state"])


def _print_downtime(d: DowntimeRecord, t: float) -> None:
    state = _state(d, t)
    out.print(f"[bold]#{d.id}[/] [{_COLOURS.get(state, 'white')}]{state}[/] "
              f"{escape(d.host)} {escape(d.check) if d.check else '(all checks)'} — "
              f"{common.utc(d.starts_at)} → {common.utc(d.ends_at)} UTC", soft_wrap=True)
    for label, value in (("author", d.author), ("comment", d.comment)):
        if value:
            out.print(f"  {label:<9} {value}", soft_wrap=True, markup=False)


@downtime_app.command("add")
def downtime_add(
    host: Annotated[str, typer.Argument(help="The host (its name in the configuration).")],
    check: Annotated[str | None, typer.Option(
        "--check", help="Only the checks matching this case-sensitive glob "
        "(e.g. 'snmp/temperature/*'); default: every check of the host.")] = None,
    duration: Annotated[str | None, typer.Option(
        "--duration", help="How long, from the start (30m, 2h, 1d).")] = None,
    until: Annotated[str | None, typer.Option(
        "--until", help=f"When it ends: {_ISO_HELP}.")] = None,
    start: Annotated[str | None, typer.Option(
        "--start", help=f"When it starts (default: now): {_ISO_HELP}.")] = None,
    comment: Annotated[str, typer.Option("--comment", help="Why (the planned work).")] = "",
    author: AuthorOpt = None, store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Schedule a downtime: give exactly one of --duration and --until.

    Alerts of the checks it covers notify nobody while it lasts; checks, incidents and
    remediation go on.
    """
    with errors_to_exit(as_json):
        if (duration is None) == (until is None):
            raise UsageError("give exactly one of --duration and --until")
        starts_at = None if start is None else _instant("--start", start)
        if until is not None:
            ends_at = _instant("--until", until)
        else:
            from poolwarden.config.types import parse_duration

            try:
                length = parse_duration(duration)
            except ValueError as exc:
                raise UsageError(f"--duration: {exc}") from exc
            if starts_at is None:  # now, so that 2h is exactly 2 h
                starts_at = time.time()
            ends_at = starts_at + length
        with _downtimes(store) as d:
            created = d.schedule(host, ends_at=ends_at, starts_at=starts_at,
                                 check=check or "", author=common.author(author), comment=comment)
    t = time.time()
    if as_json:
        emit_json(created.to_json(t))
    else:
        _print_downtime(created, t)


def _span(start: float, end: float) -> str:
    """``2026-11-29 16:58 → 18:28``: the end's date only when it differs."""
    a, b = (datetime.fromtimestamp(x, UTC) for x in (start, end))
    return f"{a:%Y-%m-%d %H:%M} → " + (f"{b:%H:%M}" if a.date() == b.date()
                                       else f"{b:%Y-%m-%d %H:%M}")


@downtime_app.command("list")
def downtime_list(
    host: Annotated[str | None, typer.Option("--host", help="Only this host.")] = None,
    show_all: Annotated[bool, typer.Option(
        "--all", help="Every downtime, ended and cancelled ones too, newest first "
        "(the latest 100).")] = False,
    store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Active and scheduled downtimes, soonest first (--all: every one, newest first)."""
    with errors_to_exit(as_json), _downtimes(store) as d:
        found = d.recent(host=host) if show_all else d.current(host=host)
    t = time.time()
    if as_json:
        emit_json({"downtimes": [x.to_json(t) for x in found]})
        return
    table = Table("id", "state", "host", "check", "when (UTC)", "author", "comment")
    for col in (0, 1, 2, 4):  # whole on a narrow terminal; the free text folds
        table.columns[col].no_wrap = True
    for col in (3, 5, 6):
        table.columns[col].overflow = "fold"
    for x in found:
        state = _state(x, t)
        table.add_row(str(x.id), f"[{_COLOURS.get(state, 'white')}]{state}[/]",
                      escape(x.host), escape(x.check) if x.check else "(all)",
                      _span(x.starts_at, x.ends_at), escape(x.author), escape(x.comment))
    out.print(table)


@downtime_app.command("cancel")
def downtime_cancel(
    downtime_id: Annotated[int, typer.Argument(
        help="Downtime id (see `poolwarden downtime list`).")],
    author: AuthorOpt = None, store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """End a downtime now (or drop a scheduled one); the record stays."""
    with errors_to_exit(as_json), _downtimes(store) as d:
        cancelled = d.cancel(downtime_id, common.author(author))
    if as_json:
        emit_json(cancelled.to_json())
    else:
        out.print(f"#{cancelled.id} cancelled by {cancelled.cancelled_by}", markup=False)
