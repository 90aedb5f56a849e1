"""XESCRIPT over the API: the catalog, running a script as an operator, the audit trail.

A run goes through :meth:`Operations.run_script` like every other door, so it is checked,
journalled and refused the same way. Statuses: 200 when the script ran (``ok`` false when
it failed or timed out: it still ran), 422 when the request is refused (name, arguments),
404 for a host not in the configuration, 409 when poolwarden refuses (no ``scripts:``,
host key not trusted), 502 when the host refused the key or could not be reached.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from poolwarden.api.auth import Principal, require
from poolwarden.api.context import Ctx
from poolwarden.errors import AuthenticationFailed, ConnectionFailed, UsageError
from poolwarden.scripts.audit import history, run_json
from poolwarden.scripts.catalog import MAX_ARG_LEN

router = APIRouter(tags=["scripts"])
Viewer = Annotated[Principal, Depends(require("viewer"))]
Operator = Annotated[Principal, Depends(require("operator"))]
Limit = Annotated[int, Query(ge=1, le=1000)]


class RunBody(BaseModel):
    #: bounds generous enough that a bad name or argument reaches the catalog and is
    #: refused there *and audited*; only absurd bodies are refused here, unaudited
    host: str = Field(min_length=1, max_length=300)
    script: str = Field(min_length=1, max_length=300)
    args: list[Annotated[str, Field(max_length=MAX_ARG_LEN * 4)]] = Field(
        default_factory=list, max_length=64)


@router.get("/api/v1/scripts")
def list_scripts(ctx: Ctx, _who: Viewer) -> list[dict[str, Any]]:
    """The scripts an operator may run and the arguments each declares (409 when
    ``scripts:`` is not configured). A script whose header cannot be read is listed with
    its error: it cannot be run until fixed."""
    catalog = ctx.ops.script_catalog()
    out: list[dict[str, Any]] = []
    for name in catalog.names():
        try:
            params = catalog.get(name).params
        except UsageError as exc:
            out.append({"name": name, "args": [], "error": str(exc)})
            continue
        out.append({"name": name, "args": [{"name": p.name, "type": p.kind} for p in params],
                    "usage": " ".join([name, *(f"{p.name}:{p.kind}" for p in params)]),
                    "error": None})
    return out


@router.post("/api/v1/scripts/run", response_model=None,
             responses={502: {"description": "the host refused the key or is unreachable"}})
async def run_script(body: RunBody, ctx: Ctx, who: Operator) -> dict[str, Any] | JSONResponse:
    """Run a vetted script on a configured host as ``api:<token name>``; the result with
    its exit status, output (cut at ``scripts.max_output``), ``timed_out`` and ``audit_id``."""
    try:
        result, run_id = await ctx.ops.run_script(body.host, body.script, body.args,
                                                  who=f"api:{who.name}")
    except (AuthenticationFailed, ConnectionFailed) as exc:  # the far side, not the caller
        return JSONResponse({"error": {"type": type(exc).__name__, "message": str(exc)}},
                            status_code=status.HTTP_502_BAD_GATEWAY)
    return {**result.to_json(), "audit_id": run_id}


@router.get("/api/v1/scripts/runs")
def script_runs(ctx: Ctx, _who: Viewer, limit: Limit = 50) -> list[dict[str, Any]]:
    """The audit trail, newest first: who ran (or was refused) what, where, when, result."""
    return [run_json(row) for row in history(ctx.store, limit)]
