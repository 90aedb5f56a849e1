"""Slack messages (Block Kit) from what :class:`~poolwarden.operate.ops.Operations` returns.

Pure functions of plain documents (the same JSON the REST API answers), so a message can
be checked without Slack. Every value that did not come from this module — host, VM and
check names, plugin output, comments, script output — goes through
:func:`~poolwarden.chat.slack.escape` or :func:`~poolwarden.chat.slack.code`: a VM named
``<!channel>`` must not page a whole channel.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from poolwarden.chat.commands import CONFIRM_TTL, USAGE
from poolwarden.chat.slack import code, ephemeral, escape
from poolwarden.operate.ops import elapsed

#: action_id of the buttons of a confirmation message
CONFIRM_ACTION = "poolwarden.maintenance.confirm"
CANCEL_ACTION = "poolwarden.cancel"
#: a section's text may hold 3000 characters; leave room for the last line
_SECTION = 2900
_MAX_LINES = 25
_ICON = {"OK": ":large_green_circle:", "WARNING": ":large_yellow_circle:",
         "CRITICAL": ":red_circle:", "UNKNOWN": ":white_circle:"}


def section(text: str) -> dict[str, Any]:
    if len(text) > _SECTION:
        text = text[:_SECTION] + "\n…"
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _lines(items: Iterable[str], limit: int = _MAX_LINES) -> list[str]:
    out = list(items)
    if len(out) > limit:
        out = [*out[:limit], f"… and {len(out) - limit} more"]
    return out


def _names(names: Iterable[str], limit: int = 8) -> str:
    shown = [escape(n) for n in names]
    if len(shown) > limit:
        shown = [*shown[:limit], f"+{len(shown) - limit}"]
    return ", ".join(shown)


def message(text: str, lines: Iterable[str] = (), **extra: Any) -> dict[str, Any]:
    """An ephemeral reply: ``text`` (already escaped) as the headline, ``lines`` below."""
    body = "\n".join([text, *lines])
    return ephemeral(text, [section(body)], **extra)


def refused(reason: str, **extra: Any) -> dict[str, Any]:
    return message(f":no_entry: {escape(reason)}", **extra)


def failed(what: str, reason: str, **extra: Any) -> dict[str, Any]:
    return message(f":warning: {escape(what)} failed: {escape(reason)}", **extra)


def help_message(role: str) -> dict[str, Any]:
    return message(f"poolwarden commands (your role: *{escape(role)}*)",
                   [USAGE, "_viewer: status, help · operator: also ack, XESCRIPT, "
                    "maintenance, enable, downtime_"])


# --- status ---------------------------------------------------------------------------------


def _host_flags(master: Any, enabled: Any, vms: Any) -> str:
    flags = ["master"] if master else []
    if enabled is False:
        flags.append("*disabled*")
    if vms is not None:
        flags.append(f"{vms} VM{'s' if vms != 1 else ''}")
    return " · ".join(flags)


def host_status(doc: dict[str, Any]) -> dict[str, Any]:
    """``ops.host(name)``: state, role in the pool, problems and open incidents."""
    state = str(doc.get("state", "UNKNOWN"))
    head = (f"{_ICON.get(state, '')} *{escape(doc['name'])}* (pool {escape(doc['pool'])}) "
            f"— {state}")
    lines = []
    flags = _host_flags(doc.get("master"), doc.get("enabled"), doc.get("vms"))
    if flags:
        lines.append(flags)
    counts = doc.get("checks") or {}
    lines.append("checks: " + " · ".join(f"{k} {v}" for k, v in counts.items() if v)
                 if any(counts.values()) else "checks: none reported")
    problems = [c for c in doc.get("checks_detail", []) if c.get("state") != "OK"]
    lines += _lines(f"• {c['state']} {c.get('state_type', '')} `{escape(c['check'])}` "
                    f"{escape(str(c.get('output', ''))[:200])}" for c in problems)
    incidents = doc.get("incidents", [])
    if incidents:
        lines.append("*open incidents*")
        lines += _lines(f"• #{i['id']} {escape(str(i['severity']))} `{escape(i['check'])}` "
                        f"({escape(str(i['status']))})" for i in incidents)
    return message(head, lines)


def pool_status(doc: dict[str, Any]) -> dict[str, Any]:
    """``ops.pool(name)``: master, every host with its VMs, as last read."""
    head = f"*pool {escape(doc['name'])}*"
    if doc.get("master"):
        head += f" — master {escape(doc['master'])}"
    lines = []
    if doc.get("read_at") is None:
        lines.append("not read yet" + (f": {escape(doc['error'])}" if doc.get("error")
                                       else ""))
    else:
        lines.append(f"read {elapsed(doc['read_at'])} ago"
                     + (f" · last read failed: {escape(doc['error'])}" if doc.get("error")
                        else ""))
    for h in doc.get("hosts", []):
        state = "" if h.get("live", True) else " · *not live*"
        vms = h.get("vms", [])
        lines.append(f"• *{escape(h['name'])}* "
                     f"{_host_flags(h.get('master'), h.get('enabled'), len(vms))}{state}"
                     + (f": {_names(vms)}" if vms else ""))
    if doc.get("halted_vms"):
        lines.append(f"halted: {_names(doc['halted_vms'])}")
    return message(head, _lines(lines, 40))


def overview(hosts: list[dict[str, Any]]) -> dict[str, Any]:
    """``ops.hosts()``: one line per host, worst first."""
    if not hosts:
        return message("no hosts in the configuration")
    return message(f"*{len(hosts)} hosts*, worst first", _lines(
        f"{_ICON.get(h['state'], '')} *{escape(h['name'])}* ({escape(h['pool'])}) "
        f"{h['state']} {_host_flags(h.get('master'), h.get('enabled'), h.get('vms'))}"
        for h in hosts))


def acknowledged(doc: dict[str, Any]) -> dict[str, Any]:
    """An incident's JSON after ``ops.acknowledge``."""
    ack = doc.get("ack") or {}
    lines = [f"> {escape(ack['comment'])}"] if ack.get("comment") else []
    return message(f":white_check_mark: incident #{doc['id']} ({escape(doc['host'])} "
                   f"`{escape(doc['check'])}`, {escape(str(doc['severity']))}) acknowledged "
                   f"by {escape(str(ack.get('by', '')))}", lines)


# --- maintenance ----------------------------------------------------------------------------


def _steps(doc: dict[str, Any], *, with_status: bool) -> list[str]:
    return _lines(
        f"{i + 1}. {escape(s['title'])}"
        + (f" — {escape(str(s.get('status', '')))}" if with_status else "")
        + (f" ({escape(str(s['detail']))[:200]})" if with_status and s.get("detail") else "")
        for i, s in enumerate(doc.get("steps", [])))


def _goal(doc: dict[str, Any]) -> str:
    return "leaving maintenance" if doc.get("goal") == "exit_maintenance" else "maintenance"


def plan(doc: dict[str, Any], confirm_value: str | None = None) -> dict[str, Any]:
    """A planned maintenance, or leaving one (a dry run's outcome); with
    ``confirm_value``, the Confirm/Cancel buttons to carry it out."""
    what = f"{_goal(doc)} of *{escape(doc['host'])}* (pool {escape(doc['pool'])})"
    if not doc.get("feasible"):
        lines = ["*infeasible*: nothing will be changed"]
        lines += _lines(f"• {escape(b['message'])}" for b in doc.get("blockers", []))
        return message(f":no_entry: {what}: plan #{doc['remediation']}", lines)
    lines = _steps(doc, with_status=False)
    if doc.get("master_before") != doc.get("master_after"):
        lines.append(f"master: {escape(str(doc.get('master_before')))} → "
                     f"{escape(str(doc.get('master_after')))}")
    head = f":clipboard: {what}: plan #{doc['remediation']}"
    if confirm_value is None:
        return message(head + " (dry run)", lines)
    msg = message(head + f" — confirm within {CONFIRM_TTL // 60} minutes", lines)
    msg["blocks"].append({"type": "actions", "elements": [
        {"type": "button", "action_id": CONFIRM_ACTION, "style": "danger",
         "text": {"type": "plain_text", "text": "Confirm"}, "value": confirm_value},
        {"type": "button", "action_id": CANCEL_ACTION,  # the token: Cancel voids it
         "text": {"type": "plain_text", "text": "Cancel"}, "value": confirm_value},
    ]})
    return msg


def maintenance_result(doc: dict[str, Any], who: str) -> dict[str, Any]:
    """A maintenance, or leaving one, that ran (``ops.maintenance(..., wait=True)``)."""
    ok = doc.get("status") == "done"
    head = (f"{':white_check_mark:' if ok else ':x:'} {_goal(doc)} of *{escape(doc['host'])}* "
            f"(remediation #{doc['remediation']}, asked by {escape(who)}): "
            f"{escape(str(doc.get('status')))}")
    lines = _steps(doc, with_status=True)
    if doc.get("error"):
        lines.append(f"error: {escape(str(doc['error']))[:500]}")
    if not doc.get("feasible", True):
        lines += _lines(f"• {escape(b['message'])}" for b in doc.get("blockers", []))
    if doc.get("master_before") != doc.get("master_after"):
        lines.append(f"master: {escape(str(doc.get('master_before')))} → "
                     f"{escape(str(doc.get('master_after')))}")
    after = doc.get("after") or {}
    if after:
        lines.append("VMs now: " + " · ".join(
            f"{escape(h)} {len(v)}" for h, v in sorted(after.items())))
    return message(head, lines, replace_original=False)


# --- downtimes ------------------------------------------------------------------------------


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _downtime_line(d: dict[str, Any]) -> str:
    what = escape(d["check"]) if d.get("check") else "every check"
    note = f" — {escape(d['comment'])}" if d.get("comment") else ""
    return (f"#{d['id']} *{escape(d['host'])}* ({what}) {d['state']}, "
            f"{_utc(d['starts_at'])} → {_utc(d['ends_at'])}, by {escape(d['author'])}{note}")


def downtime_scheduled(d: dict[str, Any]) -> dict[str, Any]:
    return message(f":zzz: downtime #{d['id']} on *{escape(d['host'])}* until "
                   f"{_utc(d['ends_at'])}: its alerts page nobody meanwhile",
                   [_downtime_line(d)])


def downtime_cancelled(d: dict[str, Any]) -> dict[str, Any]:
    return message(f":bell: downtime #{d['id']} on *{escape(d['host'])}* cancelled by "
                   f"{escape(str(d.get('cancelled_by')))}: its alerts notify again")


def downtimes(items: list[dict[str, Any]], host: str | None) -> dict[str, Any]:
    where = f" on *{escape(host)}*" if host else ""
    if not items:
        return message(f"no active or scheduled downtime{where}")
    return message(f":zzz: {len(items)} active or scheduled downtime(s){where}",
                   _lines(_downtime_line(d) for d in items))


# --- scripts --------------------------------------------------------------------------------


def script_result(doc: dict[str, Any], audit_id: int) -> dict[str, Any]:
    """A script's ``ScriptResult.to_json()`` and its audit row."""
    status = str(doc.get("status"))
    icon = ":white_check_mark:" if doc.get("ok") else ":x:"
    args = " ".join(escape(a) for a in doc.get("args", []))
    head = (f"{icon} XESCRIPT #{escape(doc['host'])} #{escape(doc['script'])} {args} — "
            f"{status}, exit {doc.get('exit_status')} in {float(doc.get('duration', 0)):.1f} s"
            f" (audit #{audit_id})")
    lines = []
    if doc.get("stdout"):
        lines.append(code(doc["stdout"], 1800))
    if doc.get("stderr"):
        lines += ["stderr:", code(doc["stderr"], 700)]
    if doc.get("stdout_truncated") or doc.get("stderr_truncated"):
        lines.append("_output was cut at the configured maximum_")
    return message(head, lines)


__all__ = ["CANCEL_ACTION", "CONFIRM_ACTION", "acknowledged", "downtime_cancelled",
           "downtime_scheduled", "downtimes", "failed", "help_message",
           "host_status", "maintenance_result", "message", "overview", "plan", "pool_status",
           "refused", "script_result", "section"]
