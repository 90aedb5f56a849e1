"""Scheduled downtimes: list, schedule and cancel planned work on a configured host.

Alerts a downtime covers notify nobody while it lasts; checks, incidents and remediation
go on (``store.downtimes``). Statuses: 201 created, 404 for a host not in the
configuration or an unknown id, 409 when cancelling one already cancelled or over, 422
with the reason when the request is refused (both or neither of ``ends_at`` and
``duration``, an end before the start, over 366 days...). Routes are plain ``def``: the
store is blocking, FastAPI runs them in its thread pool.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status
from pydantic import BaseModel, Field

from poolwarden.api.auth import Principal, require
from poolwarden.api.context import Ctx
from poolwarden.errors import UsageError
from poolwarden.store.db import now
from poolwarden.store.downtimes import Downtimes

router = APIRouter(tags=["downtimes"])
Viewer = Annotated[Principal, Depends(require("viewer"))]
Operator = Annotated[Principal, Depends(require("operator"))]


class DowntimeBody(BaseModel):
    #: bounds generous enough that the store names what is wrong; only absurd bodies stop here
    host: str = Field(min_length=1, max_length=300)
    #: a case-sensitive glob of check names; empty or null: every check of the host
    check: str | None = Field(None, max_length=1000)
    #: epoch seconds (default: now)
    starts_at: float | None = Field(None, allow_inf_nan=False)
    #: epoch seconds; give this or ``duration``
    ends_at: float | None = Field(None, allow_inf_nan=False)
    #: seconds from the start; give this or ``ends_at``
    duration: float | None = Field(None, gt=0, allow_inf_nan=False)
    comment: str = Field("", max_length=10_000)


@router.get("/api/v1/downtimes")
def list_downtimes(ctx: Ctx, _who: Viewer, host: str | None = None,
                   all_: Annotated[bool, Query(alias="all")] = False,
                   ) -> list[dict[str, Any]]:
    """Active and scheduled downtimes, soonest first; ``all=true``: every one, ended and
    cancelled ones too, newest first (the latest 100)."""
    downtimes = Downtimes(ctx.store)
    found = downtimes.recent(host=host) if all_ else downtimes.current(host=host)
    t = now()
    return [d.to_json(t) for d in found]


@router.post("/api/v1/downtimes", status_code=status.HTTP_201_CREATED)
def schedule_downtime(body: DowntimeBody, ctx: Ctx, who: Operator) -> dict[str, Any]:
    """Schedule a downtime on a configured host, signed ``api:<token name>``."""
    if (body.ends_at is None) == (body.duration is None):
        raise UsageError("give exactly one of ends_at and duration")
    starts_at = body.starts_at
    if body.ends_at is not None:
        ends_at = body.ends_at
    else:
        assert body.duration is not None
        if starts_at is None:  # now, so that the duration is exact
            starts_at = now()
        ends_at = starts_at + body.duration
    record = ctx.ops.schedule_downtime(  # NotFound (404) unless the host is configured
        body.host, f"api:{who.name}", ends_at=ends_at, starts_at=starts_at,
        check=body.check or "", comment=body.comment)
    return record.to_json()


@router.delete("/api/v1/downtimes/{downtime_id}")
def cancel_downtime(downtime_id: int, ctx: Ctx, who: Operator) -> dict[str, Any]:
    """End a downtime now (or drop a scheduled one); the record stays, signed."""
    return ctx.ops.cancel_downtime(downtime_id, f"api:{who.name}").to_json()
