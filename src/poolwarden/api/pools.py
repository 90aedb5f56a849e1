"""Hosts and pools: what runs where, each host's sensors, maintenance in and out on request."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, status
from pydantic import BaseModel

from poolwarden.api.auth import Principal, require
from poolwarden.api.context import Ctx

router = APIRouter(tags=["pools"])
Viewer = Annotated[Principal, Depends(require("viewer"))]
Operator = Annotated[Principal, Depends(require("operator"))]


class MaintenanceBody(BaseModel):
    dry_run: bool = False
    shutdown: bool = False
    #: answer only when the maintenance has finished (else once it is planned)
    wait: bool = False


@router.get("/api/v1/hosts")
def list_hosts(ctx: Ctx, _who: Viewer) -> list[dict[str, Any]]:
    """Configured hosts, worst first: pool, worst check state, counts by state, whether
    the host is the master, enabled, and how many VMs it runs (from the pool cache)."""
    return ctx.ops.hosts()


@router.get("/api/v1/hosts/{name}")
def get_host(name: str, ctx: Ctx, _who: Viewer) -> dict[str, Any]:
    """One host: every check with its latest reading and thresholds, open incidents."""
    return ctx.ops.host(name)


@router.get("/api/v1/hosts/{name}/history")
def host_history(name: str, ctx: Ctx, _who: Viewer, check: str,
                 seconds: Annotated[float, Query(gt=0, le=31 * 86400)] = 3600.0,
                 ) -> list[dict[str, Any]]:
    """Recent readings of one check, oldest first (what the host page charts)."""
    return [{"ts": ts, "value": value, "state": state.name}
            for ts, value, state in ctx.ops.history(name, check, seconds)]


@router.post("/api/v1/hosts/{name}/maintenance",
             responses={202: {"description": "planned and running: follow the remediation"}})
async def host_maintenance(name: str, body: MaintenanceBody, ctx: Ctx, who: Operator,
                           response: Response) -> dict[str, Any]:
    """Hand the master role away, evacuate, disable; or only plan it (``dry_run``).

    Answers once the plan is journaled (``remediation`` is its id): 200 when it is
    complete (dry run, infeasible plan, or ``wait``), 202 while it is still running.
    409 while another remediation holds the pool."""
    result = await ctx.ops.maintenance(name, f"api:{who.name}", dry_run=body.dry_run,
                                       shutdown=body.shutdown, wait=body.wait)
    if not result.get("finished"):
        response.status_code = status.HTTP_202_ACCEPTED
    return result


class EnableBody(BaseModel):
    dry_run: bool = False
    #: migrate back the VMs the host's last maintenance moved away
    restore: bool = False
    wait: bool = False


@router.post("/api/v1/hosts/{name}/enable",
             responses={202: {"description": "planned and running: follow the remediation"}})
async def host_enable(name: str, body: EnableBody, ctx: Ctx, who: Operator,
                      response: Response) -> dict[str, Any]:
    """Take a host out of maintenance: enable it, clear the maintenance mark and, with
    ``restore``, bring back its VMs. Answers as the maintenance route does (200/202/409)."""
    result = await ctx.ops.exit_maintenance(name, f"api:{who.name}", restore=body.restore,
                                            dry_run=body.dry_run, wait=body.wait)
    if not result.get("finished"):
        response.status_code = status.HTTP_202_ACCEPTED
    return result


@router.get("/api/v1/pools")
def list_pools(ctx: Ctx, _who: Viewer) -> list[dict[str, Any]]:
    """Every pool poolwarden can read: hosts, the master, the VMs on each host."""
    return ctx.ops.pools()


@router.get("/api/v1/pools/{name}")
def get_pool(name: str, ctx: Ctx, _who: Viewer) -> dict[str, Any]:
    """One pool (as last read) and its latest remediation with the before/after layout."""
    return ctx.ops.pool(name)


@router.post("/api/v1/pools/{name}/refresh")
async def refresh_pool(name: str, ctx: Ctx, _who: Viewer) -> dict[str, Any]:
    """Read the pool now instead of waiting for the next periodic read."""
    return await ctx.ops.refresh_pool(name)
