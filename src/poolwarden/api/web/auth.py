"""The login form and logout: user name + password, a server-side session in a cookie.

Login CSRF (a site logging the victim in as the attacker) is blocked with a pre-session
token: the form carries the value of a ``__Host-`` cookie set with it (double submit),
and the POST must also be same-origin. Failed logins are rate limited per client address
*and* per user name with the API's :class:`~poolwarden.api.auth.FailureLimiter` (the one
given to ``create_app``): the address limit stops one client guessing many names, the
name limit stops many clients guessing one password. A limited client gets 429 and is
told how long to wait; its password is not even checked. Failures are logged with the
address and the (quoted, truncated) name; passwords never reach a log.
"""

from __future__ import annotations

import logging
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from poolwarden.api.auth import AuthState
from poolwarden.api.context import Ctx
from poolwarden.api.users import MAX_PASSWORD, check_login
from poolwarden.api.web.core import (
    LOGIN,
    UiRoute,
    acting,
    address,
    over_https,
    redirect,
    render,
    safe_next,
    same_origin,
    tokens_match,
    web_state,
)
from poolwarden.api.web.sessions import COOKIE, LOGIN_COOKIE, WebPrincipal

log = logging.getLogger("poolwarden.api")
router = APIRouter(route_class=UiRoute, include_in_schema=False)

#: how long a login form stays usable (seconds)
LOGIN_FORM_TTL = 3600
_LOOPBACK = ("localhost", "127.", "[::1]", "::1")


def _set_cookie(response: Response, name: str, value: str, max_age: int | None = None,
                ) -> None:
    """``Secure; HttpOnly; SameSite=Strict; Path=/`` and no Domain, as ``__Host-`` needs.
    Without ``max_age`` the cookie ends with the browser session."""
    response.set_cookie(name, value, max_age=max_age, path="/", secure=True, httponly=True,
                        samesite="strict")


def _forget_cookie(response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", secure=True, httponly=True, samesite="strict")


def _secure_transport(request: Request) -> bool:
    """Whether the browser will keep a ``Secure`` cookie: HTTPS (here or at a proxy), or
    a loopback address (browsers treat those as secure)."""
    if over_https(request):
        return True
    host = (request.url.hostname or "").lower()
    return host.startswith(_LOOPBACK)


def _login_page(request: Request, *, status: int = 200, error: str = "", name: str = "",
                next_url: str = "/ui/") -> Response:
    """The form with a fresh pre-session token in its field and its cookie."""
    token = secrets.token_urlsafe(32)
    response = render(request, "login.html", http_status=status, error=error, name=name,
                      next_url=next_url, login_token=token,
                      insecure=not _secure_transport(request))
    _set_cookie(response, LOGIN_COOKIE, token, LOGIN_FORM_TTL)
    return response


@router.get("/", include_in_schema=False)
def root() -> Response:
    return redirect("/ui/")


@router.get(LOGIN)
def login_form(request: Request, next: str | None = None) -> Response:
    """The form; somebody already logged in goes straight on."""
    target = safe_next(next)
    if web_state(request).sessions.lookup(request.cookies.get(COOKIE)) is not None:
        return redirect(target)
    return _login_page(request, next_url=target)


def _limited(auth: AuthState, keys: list[str]) -> float | None:
    waits = [w for k in keys if (w := auth.limiter.retry_after(k)) is not None]
    return max(waits) if waits else None


@router.post(LOGIN)
def login(request: Request, ctx: Ctx,
          name: Annotated[str, Form(max_length=200)] = "",
          password: Annotated[str, Form(max_length=MAX_PASSWORD)] = "",
          csrf: Annotated[str, Form(max_length=200)] = "",
          next: Annotated[str, Form(max_length=2000)] = "/ui/",
          ) -> Response:
    target = safe_next(next)
    same_origin(request)
    if not tokens_match(request.cookies.get(LOGIN_COOKIE, ""), csrf):
        return _login_page(request, status=403, name=name, next_url=target,
                           error="The login form expired or did not come from here: "
                                 "try again.")
    auth: AuthState = request.app.state.auth
    client = address(request)
    shown = name.strip().lower()[:64]
    keys = [client, f"user:{shown}"]
    wait = _limited(auth, keys)
    if wait is not None:
        seconds = int(wait) + 1
        log.warning("dashboard login refused (rate limited) for %r from %s", shown, client)
        page = _login_page(request, status=429, name=name, next_url=target,
                           error=f"Too many failed logins: wait {seconds} s, then try again.")
        page.headers["Retry-After"] = str(seconds)
        return page
    user = check_login(ctx.store, name, password)
    if user is None:
        for key in keys:
            auth.limiter.failed(key)
        log.warning("dashboard login failed for %r from %s", shown, client)
        return _login_page(request, status=401, name=name, next_url=target,
                           error="Wrong user name or password.")
    sessions = web_state(request).sessions
    sessions.end(request.cookies.get(COOKIE))  # never keep somebody else's session
    secret, _me = sessions.create(user, client)
    log.info("dashboard login: %s (%s) from %s", user.name, user.role, client)
    response = redirect(target)
    _set_cookie(response, COOKIE, secret)
    _forget_cookie(response, LOGIN_COOKIE)
    return response


Session = Annotated[WebPrincipal, Depends(acting("viewer"))]


@router.post("/ui/logout")
def logout(request: Request, me: Session) -> Response:
    """End the session server-side (the cookie becomes worthless) and forget it."""
    web_state(request).sessions.end(request.cookies.get(COOKIE))
    log.info("dashboard logout: %s", me.name)
    response = redirect(LOGIN)
    _forget_cookie(response, COOKIE)
    return response
