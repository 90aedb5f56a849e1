"""The plumbing of the Slack routes (:mod:`poolwarden.api.slack`): the door a request
passes (size, signature, rate limit, user → role) and the replies posted later to Slack's
``response_url``. Kept apart so the routes module reads as what chat can do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from fastapi import HTTPException, Request, status

from poolwarden.api.address import client_address
from poolwarden.api.auth import AuthState, Principal
from poolwarden.api.context import ApiContext
from poolwarden.chat import render
from poolwarden.chat.slack import (
    MAX_BODY,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    response_url_allowed,
    verify_signature,
)
from poolwarden.config.models import SlackConfig
from poolwarden.errors import (
    AuthenticationFailed,
    NotFound,
    OperationRefused,
    PoolwardenError,
    UsageError,
)

log = logging.getLogger("poolwarden.chat")
#: seconds allowed to post a delayed reply to Slack
POST_TIMEOUT = 10.0
Message = dict[str, Any]
T = TypeVar("T")
#: background work (delayed replies, confirmed actions), referenced until done
_tasks: set[asyncio.Future[Any]] = set()
#: what refuses an action for a reason people can act on (the rest is a failure)
_REFUSALS = (NotFound, UsageError, OperationRefused, AuthenticationFailed)
_TOO_LARGE = 413  # the name of this constant changed across Starlette versions


@dataclass(frozen=True, slots=True)
class Caller:
    """A Slack user allowed in: the ids, the role, and the author of what they do."""

    user_id: str
    team_id: str
    principal: Principal

    @property
    def who(self) -> str:
        return self.principal.name


def keep(task: asyncio.Future[T]) -> asyncio.Future[T]:
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return task


# --- the door: configuration, size, signature, user ---------------------------------------


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise HTTPException(_TOO_LARGE, "body too large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise HTTPException(_TOO_LARGE, "body too large")
    return bytes(body)


async def verified(request: Request, ctx: ApiContext) -> tuple[SlackConfig, str, bytes]:
    """The Slack settings, the signing secret and the body of a correctly signed request;
    404 when Slack is not configured, 429/413/401 otherwise."""
    cfg = ctx.config.chat.slack
    if cfg is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Slack is not configured")
    auth: AuthState = request.app.state.auth
    address = client_address(request, ctx.config.api.trusted_proxies)
    wait = auth.limiter.retry_after(address)
    if wait is not None:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "too many failed requests",
                            headers={"Retry-After": str(int(wait) + 1)})
    body = await _read_body(request)
    secret = cfg.secret.reveal()  # read each time: a rotated secret file applies at once
    try:
        verify_signature(secret, request.headers.get(TIMESTAMP_HEADER), body,
                         request.headers.get(SIGNATURE_HEADER), time.time())
    except AuthenticationFailed as exc:
        auth.limiter.failed(address)
        log.warning("Slack request refused from %s: %s", address, exc)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid Slack signature") from exc
    return cfg, secret, body


def caller_for(cfg: SlackConfig, user_id: str, user_name: str, team_id: str) -> Caller | None:
    role = cfg.users.get(user_id)
    if role is None or (cfg.teams and team_id not in cfg.teams):
        log.warning("Slack user %s (team %s) is not allowed: refused", user_id,
                    team_id or "-")
        return None
    who = f"slack:{user_id}" + (f" ({user_name})" if user_name else "")
    return Caller(user_id, team_id, Principal(who, role, f"slack:{user_id}"))


def not_allowed() -> Message:
    return render.refused("you are not allowed to use poolwarden from Slack: ask an "
                          "administrator to add your Slack user id to chat.slack.users")


# --- delayed replies -----------------------------------------------------------------------


async def post_reply(url: str, message: Message, prefix: str) -> bool:
    """POST ``message`` to a Slack ``response_url`` if it is under ``prefix``; the URL is
    a capability (anyone holding it may post for 30 min), so only its host is logged."""
    if not response_url_allowed(url, prefix):
        try:
            host = urlsplit(url).hostname
        except ValueError:
            host = "(malformed)"
        log.warning("Slack reply not posted: response_url on %r is not under %s", host,
                    prefix)
        return False
    host = urlsplit(url).hostname
    try:
        async with httpx.AsyncClient(timeout=POST_TIMEOUT, follow_redirects=False) as client:
            r = await client.post(url, json=message)
            r.raise_for_status()
    except httpx.HTTPError as exc:
        log.warning("Slack reply to %s failed: %s", host, type(exc).__name__)
        return False
    return True


async def settle(work: Awaitable[Message], what: str) -> Message:
    """``work``'s message, or the refusal/failure it raised as a message."""
    try:
        return await work
    except _REFUSALS as exc:
        return render.refused(str(exc))
    except PoolwardenError as exc:
        return render.failed(what, str(exc))


async def post_later(task: asyncio.Future[Message], url: str, prefix: str,
                      what: str) -> None:
    try:
        message = await task
    except Exception:  # nobody awaits this task: log it and say it, do not lose it
        log.exception("Slack: %s failed", what)
        message = render.failed(what, "internal error (see poolwarden's log)")
    await post_reply(url, message, prefix)

__all__ = ["Caller", "Message", "caller_for", "keep", "not_allowed", "post_later", "post_reply",
           "settle", "verified"]
