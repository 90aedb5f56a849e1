"""What every route module reaches through ``request.app.state.ctx``.

Route modules (REST, pools, scripts, dashboard, Slack) are separate ``APIRouter``s; they
share this one context instead of closures over ``create_app``'s locals, so each can be
written and tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request, status

from poolwarden.config.models import Config
from poolwarden.incidents.manager import IncidentManager
from poolwarden.operate.ops import Operations
from poolwarden.store.db import Store

if TYPE_CHECKING:
    from poolwarden.service import Monitor


@dataclass
class ApiContext:
    store: Store
    config: Config
    ops: Operations
    monitor: Monitor | None = None

    @property
    def incidents(self) -> IncidentManager:
        return self.ops.incidents

    def need_monitor(self) -> Monitor:
        """The live monitor, or 503: an API process beside the service has no live state."""
        if self.monitor is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                "no monitor runs in this process")
        return self.monitor


def get_context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ApiContext, Depends(get_context)]

__all__ = ["ApiContext", "Ctx", "get_context"]
