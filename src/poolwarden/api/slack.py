"""Slack slash commands and buttons: ``POST /chat/slack/commands`` and ``/interactive``.

These two routes are not authenticated by bearer tokens but by Slack's request signature
(:func:`poolwarden.chat.slack.verify_signature`) over the raw body, read — bounded — before
anything is parsed; failures count against the client address in the API's
``FailureLimiter``. The sender is then mapped to a role by ``chat.slack.users`` (and
``teams``); anybody else gets a refusal. Without ``chat.slack`` the routes answer 404.

Slack wants an answer within 3 s. Reads and acknowledgements answer at once; a plan or a
script gets :data:`QUICK` seconds, after which the reply says it is under way and the
result is posted to the request's ``response_url`` — only when that URL is under
``response_url_prefix``, so a forged URL cannot make poolwarden call into its own network.
Every action goes through :class:`~poolwarden.operate.ops.Operations` as
``slack:<user id> (<name>)``: same checks, same journal and audit as the REST API.
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
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from poolwarden.api.address import client_address
from poolwarden.api.auth import AuthState, Principal
from poolwarden.api.context import ApiContext, Ctx
from poolwarden.chat import render
from poolwarden.chat.commands import (
    Ack,
    Command,
    Confirmation,
    Help,
    Maintenance,
    Script,
    Status,
    open_confirmation,
    parse_command,
    required_role,
    sign_confirmation,
)
from poolwarden.chat.slack import (
    MAX_BODY,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    escape,
    parse_block_action,
    parse_form,
    parse_slash_command,
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
from poolwarden.store.confirmations import first_use

log = logging.getLogger("poolwarden.chat")
router = APIRouter(tags=["chat"], include_in_schema=False)

#: seconds a plan or a script may take before the reply becomes "under way"
QUICK = 2.0
#: seconds allowed to post a delayed reply to Slack
POST_TIMEOUT = 10.0
Message = dict[str, Any]
T = TypeVar("T")
#: background work (delayed replies, confirmed maintenances), referenced until done
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


def _keep(task: asyncio.Future[T]) -> asyncio.Future[T]:
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


async def _verified(request: Request, ctx: ApiContext) -> tuple[SlackConfig, str, bytes]:
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


def _caller(cfg: SlackConfig, user_id: str, user_name: str, team_id: str) -> Caller | None:
    role = cfg.users.get(user_id)
    if role is None or (cfg.teams and team_id not in cfg.teams):
        log.warning("Slack user %s (team %s) is not allowed: refused", user_id,
                    team_id or "-")
        return None
    who = f"slack:{user_id}" + (f" ({user_name})" if user_name else "")
    return Caller(user_id, team_id, Principal(who, role, f"slack:{user_id}"))


def _not_allowed() -> Message:
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


async def _settle(work: Awaitable[Message], what: str) -> Message:
    """``work``'s message, or the refusal/failure it raised as a message."""
    try:
        return await work
    except _REFUSALS as exc:
        return render.refused(str(exc))
    except PoolwardenError as exc:
        return render.failed(what, str(exc))


async def _post_later(task: asyncio.Future[Message], url: str, prefix: str,
                      what: str) -> None:
    try:
        message = await task
    except Exception:  # nobody awaits this task: log it and say it, do not lose it
        log.exception("Slack: %s failed", what)
        message = render.failed(what, "internal error (see poolwarden's log)")
    await post_reply(url, message, prefix)


async def _answer(work: Awaitable[Message], what: str, pending: Message, url: str,
                  prefix: str) -> Message:
    """``work``'s message if it is ready within :data:`QUICK` seconds; else ``pending``
    now and the message to ``url`` when it is."""
    task = _keep(asyncio.ensure_future(_settle(work, what)))
    done, _ = await asyncio.wait({task}, timeout=QUICK)
    if task in done:
        return task.result()
    _keep(asyncio.ensure_future(_post_later(task, url, prefix, what)))
    return pending


# --- commands ------------------------------------------------------------------------------


async def _status(ctx: ApiContext, target: str | None) -> Message:
    ops = ctx.ops
    if target is None:
        return render.overview(await asyncio.to_thread(ops.hosts))
    try:
        return render.host_status(await asyncio.to_thread(ops.host, target))
    except NotFound:
        pass
    entry = ops.pool_cache.get(target)
    if entry is None:
        raise NotFound(f"no host or pool named {target!r}")
    if entry.read_at is None:  # never read (an API process without the service): try now
        refresh = _keep(asyncio.ensure_future(ops.refresh_pool(target)))
        await asyncio.wait({refresh}, timeout=QUICK)
    return render.pool_status(await asyncio.to_thread(ops.pool, target))


async def _plan(ctx: ApiContext, cmd: Maintenance, caller: Caller, secret: str) -> Message:
    doc = await ctx.ops.maintenance(cmd.host, caller.who, dry_run=True)
    if cmd.dry_run or not doc.get("feasible"):
        return render.plan(doc)
    token = sign_confirmation(secret, cmd, caller.user_id, caller.team_id, time.time())
    return render.plan(doc, confirm_value=token)


async def _script(ctx: ApiContext, cmd: Script, caller: Caller) -> Message:
    result, audit_id = await ctx.ops.run_script(cmd.host, cmd.script, cmd.args, caller.who)
    return render.script_result(result.to_json(), audit_id)


async def _dispatch(ctx: ApiContext, cfg: SlackConfig, secret: str, caller: Caller,
                    command: Command, url: str) -> Message:
    prefix = cfg.response_url_prefix
    match command:
        case Help():
            return render.help_message(caller.principal.role)
        case Status(target):
            return await _settle(_status(ctx, target), "status")
        case Ack(incident_id, comment):
            return await _settle(_ack(ctx, incident_id, comment, caller), "ack")
        case Maintenance(host, dry_run):
            pending = render.message(f":hourglass: planning the maintenance of {escape(host)}…")
            return await _answer(_plan(ctx, command, caller, secret),
                                 f"maintenance of {host}" + (" (dry run)" if dry_run else ""),
                                 pending, url, prefix)
        case Script(host, script, _args):
            pending = render.message(f":hourglass: XESCRIPT #{escape(host)} #{escape(script)} "
                                     "started; the result follows here")
            return await _answer(_script(ctx, command, caller),
                                 f"XESCRIPT #{host} #{script}", pending, url, prefix)
    raise AssertionError(command)  # pragma: no cover - the match is exhaustive


async def _ack(ctx: ApiContext, incident_id: int, comment: str, caller: Caller) -> Message:
    record = await asyncio.to_thread(ctx.ops.acknowledge, incident_id, caller.who, comment)
    return render.acknowledged(record.to_json(timeline=False))


def _describe(command: Command) -> str:
    """A command for the log: its kind and target, never free text (comments)."""
    match command:
        case Status(target):
            return f"status {target or '(all)'}"
        case Ack(incident_id, _):
            return f"ack {incident_id}"
        case Maintenance(host, dry_run):
            return f"maintenance {host}" + (" dry-run" if dry_run else "")
        case Script(host, script, args):
            return f"XESCRIPT #{host} #{script} ({len(args)} args)"
    return "help"


@router.post("/chat/slack/commands")
async def slash_command(request: Request, ctx: Ctx) -> Response:
    """A slash command: answered at once (status, ack, help, a plan to confirm) or
    acknowledged and answered on ``response_url`` (a slow plan, a script)."""
    cfg, secret, body = await _verified(request, ctx)
    form = parse_form(body)
    if form.get("ssl_check") == "1":  # Slack checking our certificate: nothing to do
        return Response(status_code=status.HTTP_200_OK)
    req = parse_slash_command(form)
    caller = _caller(cfg, req.user_id, req.user_name, req.team_id)
    if caller is None:
        return JSONResponse(_not_allowed())
    try:
        command = parse_command(req.text, slash=req.command)
    except UsageError as exc:
        return JSONResponse(render.refused(str(exc)))
    needed = required_role(command)
    if not caller.principal.allows(needed):
        log.warning("Slack: %s (%s) may not %s", caller.who, caller.principal.role,
                    _describe(command))
        return JSONResponse(render.refused(
            f"this needs the {needed} role (you have {caller.principal.role})"))
    log.info("Slack: %s: %s", caller.who, _describe(command))
    return JSONResponse(await _dispatch(ctx, cfg, secret, caller, command, req.response_url))


# --- buttons -------------------------------------------------------------------------------


async def _first_use(ctx: ApiContext, conf: Confirmation, caller: Caller) -> bool | None:
    """Record the use of ``conf`` in the store, for every master and restart: True the
    first time, False if it was used before, None if the store cannot tell now."""
    try:
        return await asyncio.to_thread(first_use, ctx.store, conf.nonce, conf.expires,
                                       caller.who)
    except SQLAlchemyError as exc:
        log.error("Slack: cannot record the confirmation used by %s: %s", caller.who,
                  getattr(exc, "orig", None) or type(exc).__name__)
        return None


async def _cancel(ctx: ApiContext, secret: str, caller: Caller, value: str) -> None:
    """Cancel carries the confirmation token: void it, so that the Confirm button of the
    same message cannot be used afterwards (a cancel always succeeds, whatever it holds)."""
    try:
        conf = open_confirmation(secret, value, caller.user_id, caller.team_id, time.time())
    except (AuthenticationFailed, OperationRefused):
        return
    await _first_use(ctx, conf, caller)


async def _run_maintenance(ctx: ApiContext, host: str, who: str) -> Message:
    doc = await ctx.ops.maintenance(host, who, wait=True)
    return render.maintenance_result(doc, who)


async def _confirm(ctx: ApiContext, cfg: SlackConfig, secret: str, caller: Caller,
                   value: str, url: str) -> Message:
    """A click on Confirm: check the token, start the maintenance in the background."""
    needed = required_role(Maintenance(""))
    if not caller.principal.allows(needed):
        return render.refused(f"this needs the {needed} role (you have "
                              f"{caller.principal.role})")
    try:
        conf = open_confirmation(secret, value, caller.user_id, caller.team_id, time.time())
    except AuthenticationFailed as exc:
        log.warning("Slack: confirmation refused for %s: %s", caller.who, exc)
        return render.refused("this confirmation is not valid")
    except OperationRefused as exc:
        log.warning("Slack: confirmation refused for %s: %s", caller.who, exc)
        return render.refused(str(exc))
    host = conf.command.host
    fresh = await _first_use(ctx, conf, caller)
    if fresh is None:
        return render.failed(f"maintenance of {host}", "the store is unavailable: try again")
    if not fresh:
        return render.refused("this maintenance was already confirmed or cancelled")
    log.info("Slack: %s confirmed the maintenance of %s", caller.who, host)
    what = f"maintenance of {host}"
    work = _keep(asyncio.ensure_future(_settle(_run_maintenance(ctx, host, caller.who), what)))
    _keep(asyncio.ensure_future(_post_later(work, url, cfg.response_url_prefix, what)))
    return render.message(f":gear: maintenance of *{escape(host)}* started by "
                          f"{escape(caller.who)}; the result follows here",
                          replace_original=True)


@router.post("/chat/slack/interactive")
async def interactive(request: Request, ctx: Ctx) -> Response:
    """A button of one of our messages (Confirm/Cancel). Slack ignores this response's
    body, so the answer is posted to ``response_url`` (and returned, for logs and tests)."""
    cfg, secret, body = await _verified(request, ctx)
    action = parse_block_action(parse_form(body))
    caller = _caller(cfg, action.user_id, action.user_name, action.team_id)
    if caller is None:
        message = _not_allowed()
    elif action.action_id == render.CANCEL_ACTION:
        await _cancel(ctx, secret, caller, action.value)
        message = render.message(f"cancelled by {escape(caller.who)}", replace_original=True)
    elif action.action_id == render.CONFIRM_ACTION:
        message = await _confirm(ctx, cfg, secret, caller, action.value,
                                 action.response_url)
    else:
        message = render.refused("unknown action")
    _keep(asyncio.ensure_future(post_reply(action.response_url, message,
                                           cfg.response_url_prefix)))
    return JSONResponse(message)


__all__ = ["QUICK", "post_reply", "router"]
