"""``poolwarden incident``: list, show, acknowledge and comment incidents in the store.

People act from the command line on the same records the service writes; each action
lands in the incident's timeline with its author (``cli:user@host`` unless told).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from poolwarden.cli import common
from poolwarden.cli.common import JsonOpt, StoreOpt, emit_json, errors_to_exit, out
from poolwarden.errors import UsageError

if TYPE_CHECKING:
    from poolwarden.incidents import IncidentManager, IncidentRecord

incident_app = typer.Typer(no_args_is_help=True,
                           help="Incidents: list, show, acknowledge, comment.")

IdArg = Annotated[int, typer.Argument(help="Incident id (see `poolwarden incident list`).")]
AuthorOpt = Annotated[str | None, typer.Option(
    "--author", help="Who acts [default: cli:USER@HOST].")]
_COLOURS = {"critical": "red", "warning": "yellow", "unknown": "magenta"}


@contextmanager
def _manager(store: str | None) -> Iterator[IncidentManager]:
    from poolwarden.incidents import IncidentManager

    with common.open_store(store) as db:
        yield IncidentManager(db)


def _print_incident(inc: IncidentRecord) -> None:
    colour = _COLOURS.get(inc.severity, "white")
    out.print(f"[bold]#{inc.id}[/] [{colour}]{inc.state.name}[/] {escape(inc.host)} "
              f"{escape(inc.check)} — {inc.status}{' (archived)' if inc.archived else ''}",
              soft_wrap=True)
    reading = "" if inc.value is None else f"{inc.value:g} {inc.unit}".rstrip()
    if inc.device_status:
        reading += f" ({inc.device_status})"
    for label, value in (("pool", inc.pool), ("kind", inc.kind), ("reading", reading),
                         ("output", inc.output), ("opened", common.utc(inc.opened_at)),
                         ("resolved", common.utc(inc.resolved_at) if inc.resolved_at else ""),
                         ("taken by", f"{inc.ack_by}: {inc.ack_comment}".rstrip(": ")
                          if inc.ack_by else ""),
                         ("flapping", "yes" if inc.flapping else "")):
        if value:
            out.print(f"  {label:<9} {value}", soft_wrap=True, markup=False)
    out.print("  timeline (UTC):")
    for e in inc.events:
        out.print(f"    {common.utc(e.ts)}  {e.kind:<14} {e.author:<20} {e.message}",
                  soft_wrap=True, markup=False)


@incident_app.command("list")
def incident_list(
    status: Annotated[str | None, typer.Option(
        "--status", help="open | acknowledged | in_progress | resolved")] = None,
    host: Annotated[str | None, typer.Option("--host", help="Only this host.")] = None,
    severity: Annotated[str | None, typer.Option(
        "--severity", help="critical | warning | unknown")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 100,
    archived: Annotated[bool, typer.Option(
        "--archived", help="List the archive (old resolved incidents) instead.")] = False,
    store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Incidents, newest first."""
    with errors_to_exit(as_json), _manager(store) as m:
        found = m.list(status=status, host=host, severity=severity, limit=limit,
                       archived=archived)
    if as_json:
        emit_json({"incidents": [i.to_json(timeline=False) for i in found]})
        return
    table = Table("id", "state", "status", "host", "check", "opened (UTC)", "taken by")
    for col in (0, 1, 2, 5):
        table.columns[col].no_wrap = True
    table.columns[4].overflow = "fold"  # the whole check id, over several lines
    for i in found:
        colour = _COLOURS.get(i.severity, "white")
        table.add_row(str(i.id), f"[{colour}]{i.state.name}[/]", str(i.status),
                      escape(i.host), escape(i.check), common.utc(i.opened_at), escape(i.ack_by))
    out.print(table)


@incident_app.command("show")
def incident_show(incident_id: IdArg, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """One incident with its whole timeline."""
    with errors_to_exit(as_json), _manager(store) as m:
        inc = m.get(incident_id)
    if as_json:
        emit_json(inc.to_json())
    else:
        _print_incident(inc)


@incident_app.command("ack")
def incident_ack(
    incident_id: IdArg,
    comment: Annotated[str, typer.Option("--comment", help="Why / what is being done.")],
    author: AuthorOpt = None,
    expires_in: Annotated[str | None, typer.Option(
        "--expires-in", help="Let the acknowledgement lapse after this long (30m, 4h, 2d).",
    )] = None,
    store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Acknowledge: somebody knows. A worse state or the resolution clears it."""
    with errors_to_exit(as_json):
        expires_at = None
        if expires_in is not None:
            from poolwarden.config.models import parse_duration

            try:
                expires_at = time.time() + parse_duration(expires_in)
            except ValueError as exc:
                raise UsageError(f"--expires-in: {exc}") from exc
        with _manager(store) as m:
            inc = m.acknowledge(incident_id, common.author(author), comment, expires_at)
    if as_json:
        emit_json(inc.to_json())
    else:
        out.print(f"#{inc.id} acknowledged by {inc.ack_by}", markup=False)


@incident_app.command("comment")
def incident_comment(
    incident_id: IdArg,
    text: Annotated[str, typer.Argument(help="The comment.")],
    author: AuthorOpt = None, store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Add a comment to an incident's timeline (resolved ones too: the post-mortem)."""
    with errors_to_exit(as_json), _manager(store) as m:
        inc = m.comment(incident_id, common.author(author), text)
    if as_json:
        emit_json(inc.to_json())
    else:
        out.print(f"#{inc.id}: comment added", markup=False)
