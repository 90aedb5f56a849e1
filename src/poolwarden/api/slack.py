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
The door and the delayed replies are in :mod:`poolwarden.api._slack_io`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from poolwarden.api._slack_io import (
    Caller,
    Message,
    caller_for,
    keep,
    not_allowed,
    post_later,
    post_reply,
    settle,
    verified,
)
from poolwarden.api.context import ApiContext, Ctx
from poolwarden.chat import render
from poolwarden.chat.commands import (
    Ack,
    Command,
    Confirmable,
    Confirmation,
    DowntimeAdd,
    DowntimeCancel,
    DowntimeList,
    Enable,
    Help,
    Maintenance,
    Script,
    Status,
    open_confirmation,
    parse_command,
    required_role,
    sign_confirmation,
)
from poolwarden.chat.slack import escape, parse_block_action, parse_form, parse_slash_command
from poolwarden.config.models import SlackConfig
from poolwarden.errors import AuthenticationFailed, NotFound, OperationRefused, UsageError
from poolwarden.store.confirmations import first_use

log = logging.getLogger("poolwarden.chat")
router = APIRouter(tags=["chat"], include_in_schema=False)

#: seconds a plan or a script may take before the reply becomes "under way"
QUICK = 2.0


async def _answer(work: Awaitable[Message], what: str, pending: Message, url: str,
                  prefix: str) -> Message:
    """``work``'s message if it is ready within :data:`QUICK` seconds; else ``pending``
    now and the message to ``url`` when it is."""
    task = keep(asyncio.ensure_future(settle(work, what)))
    done, _ = await asyncio.wait({task}, timeout=QUICK)
    if task in done:
        return task.result()
    keep(asyncio.ensure_future(post_later(task, url, prefix, what)))
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
        refresh = keep(asyncio.ensure_future(ops.refresh_pool(target)))
        await asyncio.wait({refresh}, timeout=QUICK)
    return render.pool_status(await asyncio.to_thread(ops.pool, target))


def _what(cmd: Confirmable, *, bold: bool = False) -> str:
    """What a confirmable command does, for messages (``bold``: Slack mrkdwn) and logs."""
    host = f"*{escape(cmd.host)}*" if bold else cmd.host
    if isinstance(cmd, Enable):
        return f"leaving maintenance of {host}" + (" (restoring VMs)" if cmd.restore else "")
    return f"maintenance of {host}"


async def _remediate(ctx: ApiContext, cmd: Confirmable, who: str, *, dry_run: bool = False,
                     wait: bool = False) -> dict[str, Any]:
    if isinstance(cmd, Enable):
        return await ctx.ops.exit_maintenance(cmd.host, who, restore=cmd.restore,
                                              dry_run=dry_run, wait=wait)
    return await ctx.ops.maintenance(cmd.host, who, dry_run=dry_run, wait=wait)


async def _plan(ctx: ApiContext, cmd: Confirmable, caller: Caller, secret: str) -> Message:
    doc = await _remediate(ctx, cmd, caller.who, dry_run=True)
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
            return await settle(_status(ctx, target), "status")
        case Ack(incident_id, comment):
            return await settle(_ack(ctx, incident_id, comment, caller), "ack")
        case DowntimeAdd() | DowntimeCancel() | DowntimeList():
            return await settle(_downtime(ctx, command, caller), "downtime")
        case Maintenance() | Enable():
            what = _what(command)
            pending = render.message(f":hourglass: planning the {escape(what)}…")
            return await _answer(_plan(ctx, command, caller, secret),
                                 what + (" (dry run)" if command.dry_run else ""),
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


async def _downtime(ctx: ApiContext, cmd: DowntimeAdd | DowntimeCancel | DowntimeList,
                    caller: Caller) -> Message:
    ops = ctx.ops
    match cmd:
        case DowntimeAdd(host, seconds, comment):
            rec = await asyncio.to_thread(ops.schedule_downtime, host, caller.who,
                                          ends_at=time.time() + seconds, comment=comment)
            return render.downtime_scheduled(rec.to_json())
        case DowntimeCancel(downtime_id):
            rec = await asyncio.to_thread(ops.cancel_downtime, downtime_id, caller.who)
            return render.downtime_cancelled(rec.to_json())
        case DowntimeList(host):
            found = await asyncio.to_thread(ops.downtimes, host)
            return render.downtimes([d.to_json() for d in found], host)


def _describe(command: Command) -> str:
    """A command for the log: its kind and target, never free text (comments)."""
    match command:
        case Status(target):
            return f"status {target or '(all)'}"
        case Ack(incident_id, _):
            return f"ack {incident_id}"
        case Maintenance(host, dry_run):
            return f"maintenance {host}" + (" dry-run" if dry_run else "")
        case Enable(host, restore, dry_run):
            return (f"enable {host}" + (" restore" if restore else "")
                    + (" dry-run" if dry_run else ""))
        case Script(host, script, args):
            return f"XESCRIPT #{host} #{script} ({len(args)} args)"
        case DowntimeAdd(host, seconds, _):
            return f"downtime {host} {seconds:.0f}s"
        case DowntimeCancel(downtime_id):
            return f"downtime cancel {downtime_id}"
        case DowntimeList(host):
            return f"downtime list {host or '(all)'}"
    return "help"


@router.post("/chat/slack/commands")
async def slash_command(request: Request, ctx: Ctx) -> Response:
    """A slash command: answered at once (status, ack, help, a plan to confirm) or
    acknowledged and answered on ``response_url`` (a slow plan, a script)."""
    cfg, secret, body = await verified(request, ctx)
    form = parse_form(body)
    if form.get("ssl_check") == "1":  # Slack checking our certificate: nothing to do
        return Response(status_code=status.HTTP_200_OK)
    req = parse_slash_command(form)
    caller = caller_for(cfg, req.user_id, req.user_name, req.team_id)
    if caller is None:
        return JSONResponse(not_allowed())
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


async def _run_confirmed(ctx: ApiContext, cmd: Confirmable, who: str) -> Message:
    return render.maintenance_result(await _remediate(ctx, cmd, who, wait=True), who)


async def _confirm(ctx: ApiContext, cfg: SlackConfig, secret: str, caller: Caller,
                   value: str, url: str) -> Message:
    """A click on Confirm: check the token, start what it carries in the background."""
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
    what = _what(conf.command)
    fresh = await _first_use(ctx, conf, caller)
    if fresh is None:
        return render.failed(what, "the store is unavailable: try again")
    if not fresh:
        return render.refused("this was already confirmed or cancelled")
    log.info("Slack: %s confirmed the %s", caller.who, what)
    work = keep(asyncio.ensure_future(settle(_run_confirmed(ctx, conf.command, caller.who),
                                               what)))
    keep(asyncio.ensure_future(post_later(work, url, cfg.response_url_prefix, what)))
    return render.message(f":gear: {_what(conf.command, bold=True)} started by "
                          f"{escape(caller.who)}; the result follows here",
                          replace_original=True)


@router.post("/chat/slack/interactive")
async def interactive(request: Request, ctx: Ctx) -> Response:
    """A button of one of our messages (Confirm/Cancel). Slack ignores this response's
    body, so the answer is posted to ``response_url`` (and returned, for logs and tests)."""
    cfg, secret, body = await verified(request, ctx)
    action = parse_block_action(parse_form(body))
    caller = caller_for(cfg, action.user_id, action.user_name, action.team_id)
    if caller is None:
        message = not_allowed()
    elif action.action_id == render.CANCEL_ACTION:
        await _cancel(ctx, secret, caller, action.value)
        message = render.message(f"cancelled by {escape(caller.who)}", replace_original=True)
    elif action.action_id == render.CONFIRM_ACTION:
        message = await _confirm(ctx, cfg, secret, caller, action.value,
                                 action.response_url)
    else:
        message = render.refused("unknown action")
    keep(asyncio.ensure_future(post_reply(action.response_url, message,
                                           cfg.response_url_prefix)))
    return JSONResponse(message)


__all__ = ["QUICK", "post_reply", "router"]
