"""What every dashboard route shares: templates, the session guard, CSRF, headers, errors.

Routes are declared on routers whose ``route_class`` is :class:`UiRoute`: it renders our
errors as HTML pages (the REST API answers JSON), turns "not logged in" into a redirect
to the login form, and puts the security headers on every response, redirects and errors
included. Guards are dependencies: :data:`Viewer` for pages, :func:`acting` for anything
that changes state (session + same origin + CSRF token + role, in that order, so a forged
request learns nothing about roles).
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, Form, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from poolwarden.api.address import client_address, https
from poolwarden.api.context import ApiContext
from poolwarden.api.web.assets import asset_url
from poolwarden.api.web.format import FILTERS
from poolwarden.api.web.sessions import COOKIE, SessionManager, WebPrincipal
from poolwarden.errors import NotFound, OperationRefused, PoolwardenError, UsageError
from poolwarden.store.lease import LeaseHeld

TEMPLATES = Path(__file__).parent / "templates"
LOGIN = "/ui/login"
#: the header the dashboard's script sends with live-update requests
LIVE_HEADER = "X-Requested-With"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}

env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True,
                  undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
env.filters.update(FILTERS)
env.globals.update(asset=asset_url, now=time.time)


class UiError(Exception):
    """An error page: ``status`` and a sentence for the person reading it."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None
                 ) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class LoginRequired(Exception):
    """No live session: a page redirects to the login form, a live update gets 401."""


#: our errors -> status of the error page (subclasses first)
_ERROR_STATUS: tuple[tuple[type[PoolwardenError], int], ...] = (
    (NotFound, 404), (OperationRefused, 409), (LeaseHeld, 409), (UsageError, 400))


@dataclass
class WebState:
    """The dashboard's per-app state (``app.state.web``), made on first use."""

    sessions: SessionManager


_state_lock = threading.Lock()


def web_state(request: Request) -> WebState:
    """The app's :class:`WebState`; tests replace ``sessions.clock`` on it."""
    app_state = request.app.state
    with _state_lock:
        state: WebState | None = getattr(app_state, "web", None)
        if state is None:
            ctx: ApiContext = app_state.ctx
            state = WebState(SessionManager(ctx.store, ctx.config.api.session_idle,
                                            ctx.config.api.session_max))
            app_state.web = state
    return state


def address(request: Request) -> str:
    """The client's address, through ``api.trusted_proxies`` (:mod:`poolwarden.api.address`)."""
    ctx: ApiContext = request.app.state.ctx
    return client_address(request, ctx.config.api.trusted_proxies)


def over_https(request: Request) -> bool:
    """HTTPS here or at a trusted proxy (``api.trusted_proxies``, ``X-Forwarded-Proto``)."""
    ctx: ApiContext = request.app.state.ctx
    return https(request, ctx.config.api.trusted_proxies)


def safe_next(target: str | None, default: str = "/ui/") -> str:
    """``target`` if it is a path of the dashboard on this server, else ``default``: a
    login or an action never redirects anywhere else (open redirects)."""
    if not target or "\\" in target or any(ord(c) < 32 for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/ui/"):
        return default
    return target


def redirect(target: str) -> RedirectResponse:
    """303 See Other: after a POST the browser GETs the target (no resubmission)."""
    return RedirectResponse(target, status_code=303)


def render(request: Request, template: str, me: WebPrincipal | None = None, *,
           http_status: int = 200, **values: Any) -> HTMLResponse:
    """A page: the template with the user (for the header), their CSRF token and the
    current path (for ``next`` and the active navigation entry)."""
    html = env.get_template(template).render(
        me=me, csrf=me.csrf if me else "", path=request.url.path,
        here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        **values)
    return HTMLResponse(html, status_code=http_status)


def _error_page(request: Request, status: int, message: str,
                headers: dict[str, str] | None = None) -> Response:
    if request.headers.get(LIVE_HEADER):
        return Response(message, status_code=status, media_type="text/plain",
                        headers=headers)
    response = render(request, "error.html", _principal_or_none(request),
                      http_status=status, status_code=status, message=message)
    response.headers.update(headers or {})
    return response


def _principal_or_none(request: Request) -> WebPrincipal | None:
    found: WebPrincipal | None = getattr(request.state, "principal", None)
    return found


def _login_redirect(request: Request) -> Response:
    if request.headers.get(LIVE_HEADER):  # the script sends the person to the form
        return Response("log in again", status_code=401, media_type="text/plain",
                        headers={"X-Login": LOGIN})
    target = request.url.path if request.method == "GET" else "/ui/"
    if request.method == "GET" and request.url.query:
        target += f"?{request.url.query}"
    return redirect(f"{LOGIN}?next={quote(target, safe='')}")


class UiRoute(APIRoute):
    """An HTML route: errors become pages, security headers on everything."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        inner = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response = await inner(request)
            except LoginRequired:
                response = _login_redirect(request)
            except UiError as exc:
                response = _error_page(request, exc.status, exc.message, exc.headers)
            except RequestValidationError:
                response = _error_page(request, 400, "This request is malformed.")
            except PoolwardenError as exc:
                status = next((c for cls, c in _ERROR_STATUS if isinstance(exc, cls)),
                              503 if exc.retryable else 500)
                response = _error_page(request, status, str(exc))
            response.headers.update(SECURITY_HEADERS)
            if over_https(request):
                response.headers["Strict-Transport-Security"] = "max-age=31536000"
            response.headers.setdefault("Cache-Control", "no-store")
            return response

        return handler


# --- guards ----------------------------------------------------------------------------------


def current_user(request: Request, *, touch: bool = True) -> WebPrincipal:
    """The session's principal (kept on ``request.state`` for error pages), else
    :class:`LoginRequired`. Bearer tokens do not count: the dashboard is for browsers."""
    principal = web_state(request).sessions.lookup(request.cookies.get(COOKIE),
                                                   touch=touch)
    if principal is None:
        raise LoginRequired
    request.state.principal = principal
    return principal


def _viewer(request: Request) -> WebPrincipal:
    return current_user(request)


def _live_viewer(request: Request) -> WebPrincipal:
    return current_user(request, touch=False)


Viewer = Annotated[WebPrincipal, Depends(_viewer)]
#: for live updates: does not count as activity (see ``sessions``)
LiveViewer = Annotated[WebPrincipal, Depends(_live_viewer)]


def same_origin(request: Request) -> None:
    """Refuse a cross-site request: ``Sec-Fetch-Site`` (sent by current browsers) must be
    same-origin, and ``Origin``, when sent, must name this server. Only the host and port
    are compared, so a TLS-terminating proxy that keeps ``Host`` works."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise UiError(403, "Cross-site requests are refused.")
    origin = request.headers.get("origin")
    if origin is not None:
        host = request.headers.get("host", "")
        if origin == "null" or urlsplit(origin).netloc.lower() != host.lower():
            raise UiError(403, "Cross-origin requests are refused.")


def tokens_match(expected: str, given: str | None) -> bool:
    """Constant-time comparison of CSRF tokens; an empty one never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


def acting(role: str) -> Callable[..., WebPrincipal]:
    """A dependency for state-changing requests: a live session, same origin, the
    session's CSRF token (form field ``csrf`` or header ``X-CSRF-Token``), then
    ``role``."""

    def dependency(request: Request, csrf: Annotated[str | None, Form()] = None,
                   x_csrf_token: Annotated[str | None, Header()] = None) -> WebPrincipal:
        me = current_user(request)
        same_origin(request)
        if not tokens_match(me.csrf, csrf or x_csrf_token):
            raise UiError(403, "The form's security token is missing or stale: reload the "
                          "page and try again.")
        if not me.allows(role):
            raise UiError(403, f"This needs the {role} role (you are {me.role}).")
        return me

    return dependency


__all__ = ["LIVE_HEADER", "LOGIN", "LiveViewer", "LoginRequired", "UiError", "UiRoute",
           "Viewer", "WebState", "acting", "address", "current_user", "env", "redirect",
           "render", "safe_next", "same_origin", "tokens_match", "web_state"]
