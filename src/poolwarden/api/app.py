"""The HTTP API: incidents, checks, remediations, notifications, tokens and /metrics.

Every route but ``/healthz`` requires a bearer token (``api.auth``), the OpenAPI document
included: it maps the whole surface, which is for people who may use it. Routes are plain
``def`` because the store is blocking: FastAPI runs them in its thread pool, off the
event loop the monitor may share.

Without a ``Monitor`` (an API process beside the service) the routes that read the store
work and those that need live state (``/api/v1/checks``) answer 503; ``/metrics`` then
carries only what the store knows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from poolwarden.api.auth import (
    ROLES,
    AuthState,
    FailureLimiter,
    Principal,
    create_token,
    require,
    token_id,
)
from poolwarden.api.context import ApiContext
from poolwarden.config.models import Config
from poolwarden.errors import NotFound, OperationRefused, PoolwardenError, UsageError
from poolwarden.incidents.manager import IncidentManager
from poolwarden.messages import State
from poolwarden.operate.ops import Operations, check_json, remediation_json
from poolwarden.store.db import Store
from poolwarden.store.downtimes import covering
from poolwarden.store.journal import RemediationJournal
from poolwarden.store.lease import LeaseHeld
from poolwarden.store.models import Notification, Remediation

if TYPE_CHECKING:
    from poolwarden.evaluate.state import CheckStatus
    from poolwarden.service import Monitor

Viewer = Annotated[Principal, Depends(require("viewer"))]
Operator = Annotated[Principal, Depends(require("operator"))]
Admin = Annotated[Principal, Depends(require("admin"))]
Limit = Annotated[int, Query(ge=1, le=1000)]

#: our errors -> HTTP status, checked in order (subclasses first)
ERROR_STATUS: tuple[tuple[type[PoolwardenError], int], ...] = (
    (NotFound, status.HTTP_404_NOT_FOUND),
    (LeaseHeld, status.HTTP_409_CONFLICT),  # another remediation has the pool: try later
    (OperationRefused, status.HTTP_409_CONFLICT),
    (UsageError, 422),  # the name of this constant changed across Starlette versions
)


class AckBody(BaseModel):
    comment: str = Field("", max_length=10_000)
    #: seconds from now after which the acknowledgement lapses (None: until resolved)
    expires_in: float | None = Field(None, gt=0)


class CommentBody(BaseModel):
    text: str = Field(min_length=1, max_length=10_000)


class TokenBody(BaseModel):
    role: str
    name: str = Field(min_length=1, max_length=200)


def _error_response(_request: Request, exc: Exception) -> JSONResponse:
    """Our exceptions become a status and ``{"error": {type, message}}`` (the CLI's
    ``--json`` error shape), so clients see the same errors in both places."""
    code = next((c for cls, c in ERROR_STATUS if isinstance(exc, cls)),
                status.HTTP_503_SERVICE_UNAVAILABLE
                if getattr(exc, "retryable", False) else status.HTTP_500_INTERNAL_SERVER_ERROR)
    return JSONResponse({"error": {"type": type(exc).__name__, "message": str(exc)}},
                        status_code=code)


# --- /metrics ------------------------------------------------------------------------------


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Exposition:
    """Prometheus text format 0.0.4: HELP and TYPE once per family, then its samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str,
               samples: Iterable[tuple[dict[str, str], float]]) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            inner = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{inner}}} {_number(value)}" if inner
                              else f"{name} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def metrics_text(monitor: Monitor | None, store: Store,
                 incidents: IncidentManager) -> str:
    """The exposition: live state from the monitor (if any), totals from the store, and
    the current sensor readings so an existing Prometheus can chart them."""
    out = _Exposition()
    if monitor is not None:
        states = monitor.states()
        out.family("poolwarden_checks", "gauge", "Checks by current state.",
                   (({"state": s.name}, float(states.get(s, 0))) for s in State))
        sch = monitor.scheduler.stats
        out.family("poolwarden_scheduler_lateness_seconds", "gauge",
                   "How late scheduled jobs started (max and mean since start).",
                   [({"stat": "max"}, sch.lateness_max), ({"stat": "mean"}, sch.lateness_mean)])
        out.family("poolwarden_poll_errors_total", "counter", "Polls that failed.",
                   [({}, float(monitor.stats.poll_errors))])
        for name, kind, help_text, samples in monitor.metric_families():
            out.family(name, kind, help_text, samples)
        out.family("poolwarden_bus_queue_depth", "gauge", "Batches waiting per subscription.",
                   (({"queue": q}, float(d)) for q, d in sorted(monitor.bus.depths().items())))
        out.family("poolwarden_sensor_value", "gauge",
                   "Latest reading of each hardware sensor, in its unit.",
                   (({"host": r.host, "check": r.check, "unit": r.reading.unit},
                     float(r.reading.value))
                    for r in sorted(monitor.readings(), key=lambda r: (r.host, r.check))
                    if r.reading is not None and r.reading.value is not None))
    with store.session() as s:
        by_status = {str(k): int(v) for k, v in s.execute(
            select(Remediation.status, func.count()).group_by(Remediation.status))}
    out.family("poolwarden_remediations_total", "counter", "Remediations in the journal.",
               (({"status": k}, float(v)) for k, v in sorted(by_status.items())))
    out.family("poolwarden_incidents_open", "gauge", "Incidents not resolved.",
               [({}, float(incidents.open_count()))])
    return out.text()


# --- the application -----------------------------------------------------------------------


def create_app(monitor: Monitor | None, store: Store, *, config: Config | None = None,
               ops: Operations | None = None,
               limiter: FailureLimiter | None = None) -> FastAPI:
    """The API over ``store`` (and ``monitor``'s live state when given).

    ``config`` defaults to the monitor's (else an empty one); ``ops`` to operations over
    both. ``limiter`` replaces the default 10 failed authentications per minute per
    address (it also limits failed dashboard logins).
    """
    app = FastAPI(title="poolwarden", version="1", openapi_url=None, docs_url=None,
                  redoc_url=None)
    cfg = config or (monitor.config if monitor is not None else Config())
    ops = ops or Operations(cfg, store, monitor=monitor)
    app.state.ctx = ApiContext(store, cfg, ops, monitor)
    app.state.auth = AuthState(store, limiter or FailureLimiter())
    incidents = ops.incidents
    for cls, _code in ERROR_STATUS:
        app.add_exception_handler(cls, _error_response)
    app.add_exception_handler(PoolwardenError, _error_response)
    _core_routes(app, monitor, store, incidents, ops)
    for router in _routers():
        app.include_router(router)
    return app


def _routers() -> list[APIRouter]:
    """The route modules beside the core REST routes below."""
    from poolwarden.api import downtimes, pools, scripts, slack, web

    return [pools.router, downtimes.router, scripts.router, slack.router, web.router]


def _core_routes(app: FastAPI, monitor: Monitor | None, store: Store,
                 incidents: IncidentManager, ops: Operations) -> None:
    def need_monitor() -> Monitor:
        if monitor is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                "no monitor runs in this process")
        return monitor

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, str]:
        """Liveness for load balancers: unauthenticated, so it says nothing else."""
        return {"status": "ok"}

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(_who: Viewer) -> dict[str, Any]:
        return app.openapi()

    @app.get("/api/v1/incidents", tags=["incidents"])
    def list_incidents(_who: Viewer, status: str | None = None, host: str | None = None,
                       severity: str | None = None, limit: Limit = 100,
                       archived: bool = False) -> list[dict[str, Any]]:
        """Newest first, without timelines; ``archived=true`` lists the incidents
        retention has moved out of the live table (``GET`` by id finds them too)."""
        return [i.to_json(timeline=False)
                for i in incidents.list(status=status, host=host, severity=severity,
                                        limit=limit, archived=archived)]

    @app.get("/api/v1/incidents/{incident_id}", tags=["incidents"])
    def get_incident(incident_id: int, _who: Viewer) -> dict[str, Any]:
        return incidents.get(incident_id).to_json()

    @app.post("/api/v1/incidents/{incident_id}/ack", tags=["incidents"])
    def ack_incident(incident_id: int, body: AckBody, who: Operator) -> dict[str, Any]:
        """Acknowledge as the token's name: notifications stop repeating."""
        return ops.acknowledge(incident_id, who.name, body.comment,
                               body.expires_in).to_json()

    @app.post("/api/v1/incidents/{incident_id}/comment", tags=["incidents"])
    def comment_incident(incident_id: int, body: CommentBody, who: Operator,
                         ) -> dict[str, Any]:
        return incidents.comment(incident_id, who.name, body.text).to_json()

    @app.get("/api/v1/checks", tags=["checks"])
    def list_checks(_who: Viewer, state: str | None = None, host: str | None = None,
                    ) -> list[dict[str, Any]]:
        """Current states, problems first; ``downtime`` is the id of the scheduled
        downtime covering the check now (its alerts notify nobody), else null."""
        need_monitor()
        if state is not None and state.upper() not in State.__members__:
            raise UsageError(f"unknown state {state!r} (one of: {', '.join(State.__members__)})")
        downtimes, t = ops.downtimes(host), time.time()

        def doc(st: CheckStatus) -> dict[str, Any]:
            covered = covering(downtimes, st.host, st.check, t)
            return {**check_json(st), "downtime": covered.id if covered else None}

        return [doc(st) for st in ops.check_statuses()
                if (state is None or st.state.name == state.upper())
                and (host is None or st.host == host)]

    @app.get("/api/v1/remediations", tags=["remediations"])
    def list_remediations(_who: Viewer, pool: str | None = None, limit: Limit = 50,
                          ) -> list[dict[str, Any]]:
        """The journal, newest first."""
        return [remediation_json(r)
                for r in RemediationJournal(store).recent(pool=pool, limit=limit)]

    @app.get("/api/v1/remediations/{remediation_id}", tags=["remediations"])
    def get_remediation(remediation_id: int, _who: Viewer) -> dict[str, Any]:
        """One remediation with its plan and each step's status and times."""
        return remediation_json(RemediationJournal(store).get(remediation_id))

    @app.get("/api/v1/notifications", tags=["notifications"])
    def list_notifications(_who: Viewer, limit: Limit = 50) -> list[dict[str, Any]]:
        """Deliveries, newest first; channels are the redacted URLs the ledger stores."""
        with store.session() as s:
            rows = s.scalars(select(Notification).order_by(Notification.id.desc())
                             .limit(limit))
            return [{"id": r.id, "key": r.key, "receiver": r.receiver, "channel": r.channel,
                     "severity": r.severity, "subject": r.subject, "status": r.status,
                     "attempts": r.attempts, "error": r.error,
                     "ts": r.sent_at if r.sent_at is not None else r.created_at}
                    for r in rows]

    @app.post("/api/v1/tokens", tags=["tokens"], status_code=status.HTTP_201_CREATED)
    def new_token(body: TokenBody, _who: Admin) -> dict[str, str]:
        """Create a token; the response is the only place its secret ever appears."""
        if body.role not in ROLES:
            raise UsageError(f"unknown role {body.role!r} (one of: {', '.join(ROLES)})")
        secret = create_token(store, body.role, body.name)
        return {"token": secret, "token_id": token_id(secret), "name": body.name,
                "role": body.role}

    @app.get("/metrics", tags=["service"], response_class=PlainTextResponse)
    def metrics(_who: Viewer) -> PlainTextResponse:
        return PlainTextResponse(metrics_text(monitor, store, incidents),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")


__all__: list[str] = ["create_app", "metrics_text"]
