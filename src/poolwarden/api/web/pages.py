"""The dashboard's other pages: hosts (with downtimes), pools, incidents (with ack),
notifications.

Every read goes through :class:`~poolwarden.operate.ops.Operations`, the one code path of
the REST API and chat too; an acknowledgement from here is the same operation as
``POST /api/v1/incidents/{id}/ack``, and scheduling or cancelling a downtime the same as
``POST /api/v1/downtimes`` / ``DELETE /api/v1/downtimes/{id}``, all signed ``web:<user>``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response

from poolwarden.api.context import Ctx
from poolwarden.api.web.charts import line_chart, thresholds_of
from poolwarden.api.web.core import UiError, UiRoute, Viewer, acting, redirect, render, safe_next
from poolwarden.api.web.sessions import WebPrincipal
from poolwarden.config.types import parse_duration
from poolwarden.incidents.model import Severity, Status
from poolwarden.store.db import now
from poolwarden.store.models import NOTIFY_FAILED, NOTIFY_HELD, NOTIFY_SENDING, NOTIFY_SENT

router = APIRouter(route_class=UiRoute, include_in_schema=False)
Operator = Annotated[WebPrincipal, Depends(acting("operator"))]

#: chart periods a host page offers (seconds -> label)
RANGES = {900: "15 min", 3600: "1 h", 6 * 3600: "6 h", 86400: "1 day"}
#: how long an acknowledgement lasts, as offered by the form ("" = until resolved)
ACK_FOR = {"": "until resolved", "3600": "1 hour", "14400": "4 hours", "86400": "1 day"}
#: what the host page's downtime form proposes
DOWNTIME_FOR = "2h"
PAGE = 100


# --- hosts -----------------------------------------------------------------------------------


@router.get("/ui/hosts")
def hosts_page(request: Request, ctx: Ctx, me: Viewer) -> Response:
    return render(request, "hosts.html", me, hosts=ctx.ops.hosts())


def _since(history: list[tuple[float, float | None]], start: float) -> float:
    """Where a chart's time axis starts: ``start``, or the first reading when the history
    is shorter (a host watched for ten minutes gets a ten-minute chart, not a line
    squeezed against the right edge of an empty day)."""
    first = next((ts for ts, _ in history if ts >= start), None)
    return start if first is None else max(start, first)


def _charts(ctx: Ctx, host: str, checks: list[dict[str, Any]], selected: str | None,
            seconds: int) -> tuple[dict[str, Any], Any]:
    """A sparkline (last hour) per check with a numeric reading, and the big chart of the
    selected check over ``seconds``."""
    end = time.time()
    sparks: dict[str, Any] = {}
    big = None
    for row in checks:
        r = row["reading"]
        if row["check"] != selected and (r is None or r["value"] is None):
            continue
        limits = thresholds_of(r["warn"], r["crit"], r["warn_low"], r["crit_low"]) if r \
            else []
        unit = r["unit"] if r else ""
        span = max(seconds, 3600) if row["check"] == selected else 3600
        history = [(ts, v) for ts, v, _ in ctx.ops.history(host, row["check"], span)]
        sparks[row["check"]] = line_chart(
            history, start=_since(history, end - 3600), end=end, thresholds=limits,
            unit=unit, title=row["check"], width=140, height=28, compact=True)
        if row["check"] == selected:
            big = line_chart(history, start=_since(history, end - seconds), end=end,
                             thresholds=limits, unit=unit, title=f"{host} {row['check']}",
                             width=760, height=220)
    return sparks, big


@router.get("/ui/hosts/{name}")
def host_page(request: Request, name: str, ctx: Ctx, me: Viewer,
              check: Annotated[str | None, Query(max_length=400)] = None,
              range_: Annotated[int, Query(alias="range")] = 3600) -> Response:
    """A host: summary, each check with its reading, thresholds and a sparkline, open
    incidents; ``check`` selects the check charted large over ``range`` seconds."""
    host = ctx.ops.host(name)
    checks = host["checks_detail"]
    seconds = range_ if range_ in RANGES else 3600
    if check is None:  # default: the worst check that has readings
        check = next((c["check"] for c in checks
                      if c["reading"] and c["reading"]["value"] is not None), None)
    elif not any(c["check"] == check for c in checks):
        raise UiError(404, f"{name} has no check {check!r}")
    sparks, big = _charts(ctx, name, checks, check, seconds)
    return render(request, "host.html", me, host=host, sparks=sparks, chart=big,
                  selected=check, seconds=seconds, ranges=RANGES,
                  downtime_for=DOWNTIME_FOR)


def _host_url(name: str) -> str:
    return f"/ui/hosts/{quote(name, safe='')}"


@router.post("/ui/hosts/{name}/downtimes")
def host_downtime(name: str, ctx: Ctx, me: Operator,
                  duration: Annotated[str, Form(max_length=40)] = DOWNTIME_FOR,
                  check: Annotated[str, Form(max_length=1000)] = "",
                  comment: Annotated[str, Form(max_length=10_000)] = "") -> Response:
    """Schedule a downtime on a configured host from now, signed ``web:<user>``; the
    store's refusals (a glob or comment too long, over 366 days) are 400 pages."""
    ctx.ops.host_info(name)  # an unknown host is a 404 before a bad duration is a 400
    try:
        seconds = parse_duration(duration.strip())
    except ValueError:
        raise UiError(400, f"Bad duration {duration.strip()[:40]!r}: give a positive number "
                      "with a unit, e.g. 30m, 2h or 1d.") from None
    start = now()
    ctx.ops.schedule_downtime(name, me.author, starts_at=start, ends_at=start + seconds,
                              check=check.strip(), comment=comment.strip())
    return redirect(_host_url(name))


@router.post("/ui/downtimes/{downtime_id}/cancel")
def downtime_cancel(downtime_id: int, ctx: Ctx, me: Operator) -> Response:
    """End a downtime now (or drop a scheduled one) as ``web:<user>``; one already
    cancelled or over is refused (409 page), an unknown id is a 404 page."""
    record = ctx.ops.cancel_downtime(downtime_id, me.author)
    return redirect(_host_url(record.host))


# --- pools -----------------------------------------------------------------------------------


@router.get("/ui/pools")
def pools_page(request: Request, ctx: Ctx, me: Viewer) -> Response:
    return render(request, "pools.html", me, pools=ctx.ops.pools())


@router.get("/ui/pools/{name}")
def pool_page(request: Request, name: str, ctx: Ctx, me: Viewer) -> Response:
    """Hosts, the master, the VMs on each host; the last remediation's before/after."""
    pool = ctx.ops.pool(name)
    health = {h["name"]: h for h in ctx.ops.hosts() if h["pool"] == name}
    rem = pool["last_remediation"]
    layout: list[dict[str, Any]] = []
    if rem is not None:
        plan = rem["plan"]
        before, after = plan["layout_before"], plan["layout_after"]
        now = {h["name"]: h["vms"] for h in pool["hosts"]}
        layout = [{"host": h, "before": before.get(h, []), "after": after.get(h, []),
                   "now": now.get(h)} for h in sorted({*before, *after, *now})]
    return render(request, "pool.html", me, pool=pool, health=health, layout=layout)


# --- incidents -------------------------------------------------------------------------------


@router.get("/ui/incidents")
def incidents_page(request: Request, ctx: Ctx, me: Viewer,
                   status: Annotated[str, Query(max_length=20)] = "unresolved",
                   host: Annotated[str, Query(max_length=200)] = "",
                   severity: Annotated[str, Query(max_length=20)] = "") -> Response:
    """Newest first; ``unresolved`` (the default) is every status but resolved."""
    statuses = [str(s) for s in Status]
    if status not in (*statuses, "unresolved", "all"):
        status = "unresolved"
    sev = severity if severity in {str(s) for s in Severity} else None
    wanted: list[str | None] = [status]
    if status == "unresolved":
        wanted = [s for s in statuses if s != Status.RESOLVED]
    elif status == "all":
        wanted = [None]
    found = [i for st in wanted
             for i in ctx.incidents.list(status=st, host=host or None, severity=sev,
                                         limit=500)]
    found.sort(key=lambda i: i.id, reverse=True)
    return render(request, "incidents.html", me, incidents=found[:500], status=status,
                  host=host, severity=sev or "", statuses=statuses,
                  severities=[str(s) for s in Severity])


@router.get("/ui/incidents/{incident_id}")
def incident_page(request: Request, incident_id: int, ctx: Ctx, me: Viewer) -> Response:
    return render(request, "incident.html", me, incident=ctx.incidents.get(incident_id),
                  ack_for=ACK_FOR)


@router.post("/ui/incidents/{incident_id}/ack")
def incident_ack(incident_id: int, ctx: Ctx, me: Operator,
                 comment: Annotated[str, Form(max_length=10_000)] = "",
                 expires_in: Annotated[str, Form(max_length=10)] = "",
                 next: Annotated[str, Form(max_length=2000)] = "",
                 ) -> Response:
    """Acknowledge as ``web:<user>``: notifications stop repeating and escalating."""
    expires = float(expires_in) if expires_in and expires_in in ACK_FOR else None
    ctx.ops.acknowledge(incident_id, me.author, comment.strip(), expires)
    return redirect(safe_next(next, f"/ui/incidents/{incident_id}"))


@router.post("/ui/incidents/{incident_id}/comment")
def incident_comment(incident_id: int, ctx: Ctx, me: Operator,
                     text: Annotated[str, Form(max_length=10_000)] = "") -> Response:
    if not text.strip():
        raise UiError(400, "A comment needs some text.")
    ctx.incidents.comment(incident_id, me.author, text.strip())
    return redirect(f"/ui/incidents/{incident_id}")


# --- notifications ---------------------------------------------------------------------------

NOTIFY_STATUSES = (NOTIFY_SENT, NOTIFY_FAILED, NOTIFY_SENDING, NOTIFY_HELD)


@router.get("/ui/notifications")
def notifications_page(request: Request, ctx: Ctx, me: Viewer,
                       status: Annotated[str, Query(max_length=20)] = "",
                       page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> Response:
    """The notification log, newest first, :data:`PAGE` per page."""
    wanted = status if status in NOTIFY_STATUSES else None
    rows = ctx.ops.notifications(limit=PAGE + 1, offset=(page - 1) * PAGE, status=wanted)
    return render(request, "notifications.html", me, rows=rows[:PAGE], page=page,
                  more=len(rows) > PAGE, status=wanted or "", statuses=NOTIFY_STATUSES)


#: included after every other dashboard route (``api.web``): an unknown page under /ui/
#: is an HTML 404 with the dashboard's headers, for logged-in people only
fallback = APIRouter(route_class=UiRoute, include_in_schema=False)


@fallback.get("/ui/{rest:path}")
def not_found(me: Viewer) -> Response:
    raise UiError(404, "There is no such page.")


__all__ = ["fallback", "router"]
