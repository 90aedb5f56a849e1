"""The web dashboard: server-rendered pages under ``/ui/`` with browser login sessions.

See ``docs/dashboard.md``. ``router`` is what ``api.app.create_app`` includes; the pages
are split by subject: ``auth`` (login, logout), ``board`` (the status board and its live
fragment), ``pages`` (hosts, pools, incidents, notifications), ``assets`` (static files).
"""

from __future__ import annotations

from fastapi import APIRouter

from poolwarden.api.web import auth, board, maintenance, pages
from poolwarden.api.web.assets import static_router
from poolwarden.api.web.core import UiRoute

router = APIRouter()
for _part in (auth.router, board.router, pages.router, maintenance.router,
              static_router(UiRoute),
              pages.fallback):
    router.include_router(_part)

__all__ = ["router"]
