"""Maintenance from the dashboard: plan it (a dry run), then confirm it.

The host page's operator form posts to ``/ui/hosts/{name}/plan``, which runs the dry run
and shows the plan; its Confirm form posts to ``/ui/hosts/{name}/run``, which plans again
against the pool as it is and carries that out in the background (the pool page shows
the latest remediation). Both are :class:`~poolwarden.operate.ops.Operations` calls, the
same as the CLI, the REST API and chat: same journal, same pool lease, signed
``web:<user>``.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from poolwarden.api.context import Ctx
from poolwarden.api.web.core import UiError, UiRoute, redirect, render
from poolwarden.api.web.pages import Operator

router = APIRouter(route_class=UiRoute, include_in_schema=False)

#: the form's ``goal`` -> what the pages call it
GOALS = {"maintenance": "Maintenance", "exit_maintenance": "Leaving maintenance"}

Goal = Annotated[str, Form(max_length=40)]
Flag = Annotated[bool, Form()]


async def _remediate(ctx: Ctx, name: str, who: str, goal: str, *, shutdown: bool,
                     restore: bool, dry_run: bool) -> dict[str, Any]:
    """The operation for ``goal``; a pool busy with another remediation (``LeaseHeld``)
    is a 409 page, as in the REST API."""
    if goal not in GOALS:
        raise UiError(400, "Choose maintenance or leaving maintenance.")
    ctx.ops.host_info(name)  # an unknown host is a 404 page
    if goal == "maintenance":
        return await ctx.ops.maintenance(name, who, dry_run=dry_run, shutdown=shutdown,
                                         wait=False)
    return await ctx.ops.exit_maintenance(name, who, restore=restore, dry_run=dry_run,
                                          wait=False)


@router.post("/ui/hosts/{name}/plan")
async def host_plan(request: Request, name: str, ctx: Ctx, me: Operator, goal: Goal = "",
                    shutdown: Flag = False, restore: Flag = False) -> Response:
    """Dry-run ``goal`` for the host as ``web:<user>`` (journaled as a dry run) and show
    the plan, with a Confirm form when it is feasible."""
    doc = await _remediate(ctx, name, me.author, goal, shutdown=shutdown, restore=restore,
                           dry_run=True)
    after: dict[str, list[str]] = doc.get("after") or {}
    return render(request, "plan.html", me, name=name, plan=doc, goal=goal,
                  goal_label=GOALS[goal], shutdown=shutdown and goal == "maintenance",
                  restore=restore and goal == "exit_maintenance",
                  after=sorted(after.items()))


@router.post("/ui/hosts/{name}/run")
async def host_run(name: str, ctx: Ctx, me: Operator, goal: Goal = "",
                   shutdown: Flag = False, restore: Flag = False) -> Response:
    """Carry ``goal`` out (planned again against the pool as it is now, as chat's Confirm
    does) and go to the pool page, which shows the remediation as it runs."""
    await _remediate(ctx, name, me.author, goal, shutdown=shutdown, restore=restore,
                     dry_run=False)
    return redirect(f"/ui/pools/{quote(ctx.ops.host_info(name).pool, safe='')}")


__all__ = ["router"]
