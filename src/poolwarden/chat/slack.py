"""Slack's side of the protocol, pure: request signatures, payloads, escaping, reply URLs.

Slack signs every request with the app's signing secret (scheme ``v0``): the header
``X-Slack-Signature`` is ``v0=`` and the hex HMAC-SHA256 of ``v0:{timestamp}:{raw body}``,
the timestamp travelling in ``X-Slack-Request-Timestamp``. The body must be verified
exactly as received, before any parsing, and a timestamp more than five minutes away from
our clock is refused so that a captured request cannot be replayed later.

Everything here is a function of its arguments (the clock is a parameter), so every
refusal can be tested without a server. Refusals raise
:class:`~poolwarden.errors.AuthenticationFailed` (signature) or
:class:`~poolwarden.errors.UsageError` (a payload that is not what Slack sends); their
messages never contain the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from poolwarden.errors import AuthenticationFailed, UsageError

VERSION = "v0"
#: seconds a request's timestamp may differ from our clock (Slack's documented window)
TOLERANCE = 300.0
#: the largest body read; Slack's payloads are a few KiB
MAX_BODY = 64 * 1024
TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
SIGNATURE_HEADER = "X-Slack-Signature"

_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
_SIGNATURE_RE = re.compile(r"v0=[0-9a-f]{64}")
#: Slack ids (users U…/W…, teams T…, channels C…): letters and digits only, so they are
#: safe in logs, authors and messages as they are
_ID_RE = re.compile(r"[A-Za-z0-9]{1,40}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_DOT_SEGMENT_RE = re.compile(r"(^|/)(\.|%2e){1,2}(/|$)", re.IGNORECASE)
_MAX_FIELDS = 64
#: an interactive button's value may be up to 2000 characters (Block Kit's limit)
_MAX_VALUE = 2000


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Slack-Signature`` Slack would send for ``body`` at ``timestamp``."""
    base = f"{VERSION}:{timestamp}:".encode() + body
    return f"{VERSION}=" + hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


def verify_signature(secret: str, timestamp: str | None, body: bytes, signature: str | None,
                     now: float, *, tolerance: float = TOLERANCE) -> None:
    """Return if ``signature`` is Slack's for ``body`` at ``timestamp``, within
    ``tolerance`` seconds of ``now``; else raise ``AuthenticationFailed`` with the reason
    (for the log: the client only learns that it was refused)."""
    if not secret:
        raise AuthenticationFailed("the signing secret is empty: every request is refused")
    if not timestamp:
        raise AuthenticationFailed(f"no {TIMESTAMP_HEADER} header")
    if not _TIMESTAMP_RE.fullmatch(timestamp):
        raise AuthenticationFailed(f"malformed {TIMESTAMP_HEADER} header")
    skew = now - int(timestamp)
    if abs(skew) > tolerance:
        raise AuthenticationFailed(
            f"timestamp {'too old' if skew > 0 else 'in the future'} ({abs(skew):.0f} s away, "
            f"at most {tolerance:.0f} s): a replay or a wrong clock")
    if not signature:
        raise AuthenticationFailed(f"no {SIGNATURE_HEADER} header")
    if not _SIGNATURE_RE.fullmatch(signature):
        raise AuthenticationFailed(f"malformed {SIGNATURE_HEADER} header (want v0=<64 hex>)")
    expected = sign(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii")):
        raise AuthenticationFailed("signature mismatch")


# --- payloads ------------------------------------------------------------------------------


def clean(text: str, limit: int = 80) -> str:
    """A display value (a user name) safe for a log line or an author: no control
    characters, bounded."""
    return _CONTROL_RE.sub("", text)[:limit]


def _id(value: object, what: str, *, required: bool = True) -> str:
    if value in (None, "") and not required:
        return ""
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise UsageError(f"missing or malformed {what}")
    return value


def parse_form(body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body; a field given twice is refused
    (Slack never does it, so it would be somebody else's trick)."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=_MAX_FIELDS,
                          errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise UsageError("the body is not a form") from exc
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise UsageError(f"field {clean(key, 40)!r} given twice")
        form[key] = value
    return form


def unescape(text: str) -> str:
    """Slack sends ``&``, ``<`` and ``>`` of typed text as HTML entities; undo that once."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


@dataclass(frozen=True, slots=True)
class SlashCommand:
    """A slash command as Slack posts it (the fields poolwarden uses)."""

    command: str
    text: str
    user_id: str
    user_name: str
    team_id: str
    channel_id: str
    response_url: str
    trigger_id: str


def parse_slash_command(form: dict[str, str]) -> SlashCommand:
    command = form.get("command", "")
    if not re.fullmatch(r"/[A-Za-z0-9_.-]{1,32}", command):
        raise UsageError("missing or malformed command")
    return SlashCommand(
        command=command, text=unescape(form.get("text", "")),
        user_id=_id(form.get("user_id"), "user_id"),
        user_name=clean(form.get("user_name", "")),
        team_id=_id(form.get("team_id"), "team_id", required=False),
        channel_id=_id(form.get("channel_id"), "channel_id", required=False),
        response_url=form.get("response_url", ""), trigger_id=form.get("trigger_id", "")[:200])


@dataclass(frozen=True, slots=True)
class BlockAction:
    """A click on a button of one of our messages (``type: block_actions``)."""

    user_id: str
    user_name: str
    team_id: str
    action_id: str
    value: str
    response_url: str


def parse_block_action(form: dict[str, str]) -> BlockAction:
    """The form field ``payload`` (JSON) of an interactive request: its first action."""
    raw = form.get("payload")
    if raw is None:
        raise UsageError("no payload field")
    try:
        doc: Any = json.loads(raw)
    except ValueError as exc:
        raise UsageError("the payload is not JSON") from exc
    if not isinstance(doc, dict):
        raise UsageError("the payload is not an object")
    if doc.get("type") != "block_actions":
        raise UsageError(f"unsupported interaction {clean(str(doc.get('type')), 40)!r}")
    user, team, actions = doc.get("user"), doc.get("team"), doc.get("actions")
    if not isinstance(user, dict):
        raise UsageError("no user in the payload")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise UsageError("no action in the payload")
    action = actions[0]
    action_id, value = action.get("action_id", ""), action.get("value", "")
    if not isinstance(action_id, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,255}",
                                                          action_id):
        raise UsageError("missing or malformed action_id")
    if not isinstance(value, str) or len(value) > _MAX_VALUE:
        raise UsageError("malformed action value")
    name = user.get("username") or user.get("name") or ""
    response_url = doc.get("response_url", "")
    return BlockAction(
        user_id=_id(user.get("id"), "user.id"),
        user_name=clean(name if isinstance(name, str) else ""),
        team_id=_id(team.get("id") if isinstance(team, dict) else "", "team.id",
                    required=False),
        action_id=action_id, value=value,
        response_url=response_url if isinstance(response_url, str) else "")


# --- answers -------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Text for Slack's mrkdwn: ``&``, ``<`` and ``>`` as entities (Slack's escaping rules),
    so a VM name or a comment cannot become ``<!channel>``, a mention or a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code(text: str, limit: int = 2800) -> str:
    """A preformatted block of untrusted text (script output): escaped, bounded, and
    unable to close the block early."""
    if len(text) > limit:
        text = text[:limit] + "\n… (cut)"
    return "```" + escape(text).replace("```", "`\u200b`\u200b`") + "```"


def ephemeral(text: str, blocks: list[dict[str, Any]] | None = None,
              **extra: Any) -> dict[str, Any]:
    """A reply only the person who asked sees (``text`` is also the notification's)."""
    msg: dict[str, Any] = {"response_type": "ephemeral", "text": text[:3000]}
    if blocks:
        msg["blocks"] = blocks
    msg.update(extra)
    return msg


def response_url_allowed(url: str, prefix: str) -> bool:
    """Whether a delayed reply may be posted to ``url``: same scheme, host and port as
    ``prefix`` and a path under its path. Compared parsed, not as strings, so neither
    ``https://hooks.slack.com.evil.example/`` nor ``https://hooks.slack.com@evil/``
    passes for ``https://hooks.slack.com``; no credentials, blanks or backslashes."""
    if not url or not prefix or len(url) > 2000 or re.search(r"[\s\\\x00-\x1f\x7f]", url):
        return False
    try:
        u, p = urlsplit(url), urlsplit(prefix)
        u_port, p_port = u.port, p.port
    except ValueError:
        return False
    if u.scheme.lower() not in ("https", "http") or u.scheme.lower() != p.scheme.lower():
        return False
    if u.username is not None or u.password is not None or not u.hostname:
        return False
    if (u.hostname, u_port) != (p.hostname, p_port):
        return False
    if _DOT_SEGMENT_RE.search(u.path):
        return False  # /commands/../elsewhere is not under /commands/
    base = p.path if p.path.endswith("/") else p.path + "/"
    return u.path.startswith(base) or u.path == p.path


__all__ = ["MAX_BODY", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "TOLERANCE", "BlockAction",
           "SlashCommand", "clean", "code", "ephemeral", "escape", "parse_block_action",
           "parse_form", "parse_slash_command", "response_url_allowed", "sign", "unescape",
           "verify_signature"]
