"""What people may ask in chat, parsed strictly, and the signed confirmation of actions.

The syntax (after the slash command, e.g. ``/poolwarden status xs-a1``)::

    help
    status [HOST|POOL]
    ack ID [comment…]
    XESCRIPT #host #script-name ARG1 ARG2 …      (the established chat syntax)
    maintenance HOST [dry-run]
    enable HOST [restore] [dry-run]                (leave maintenance)
    downtime HOST DURATION [comment…]              (planned work: its alerts page nobody)
    downtime cancel ID
    downtime list [HOST]

Chat is the least trusted input poolwarden takes: one line, no control characters, names
that are plain names; anything else is a :class:`~poolwarden.errors.UsageError` whose
message says what to type instead.

A maintenance, or leaving one, is confirmed with a button. So that no state is kept
between the question and the click, the button's value is a token carrying the action,
the person who asked and an expiry, signed with a key derived from the app's signing
secret: a click is only honoured for that action, from that person, within
:data:`CONFIRM_TTL` seconds.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from poolwarden.config.types import parse_duration
from poolwarden.errors import AuthenticationFailed, OperationRefused, UsageError
from poolwarden.scripts.chat import HOST_RE, MAX_MESSAGE, parse_chat

#: seconds a confirmation button stays valid
CONFIRM_TTL = 300
MAX_COMMENT = 1000
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")  # tabs are blanks
_ACK_RE = re.compile(r"ack[ \t]+#?([0-9]{1,12})(?:[ \t]+(.*))?", re.IGNORECASE)
_DRY_RUN = frozenset({"dry-run", "--dry-run", "dryrun"})
USAGE = ("`status [HOST|POOL]` · `ack ID [comment]` · "
         "`XESCRIPT #host #script ARG…` · `maintenance HOST [dry-run]` · "
         "`enable HOST [restore] [dry-run]` · `downtime HOST DURATION [comment]` · "
         "`downtime cancel ID` · `downtime list [HOST]` · `help`")
_DOWNTIME_USAGE = ("usage: `downtime HOST DURATION [comment]` (e.g. `downtime xs1 2h BIOS`), "
                   "`downtime cancel ID` or `downtime list [HOST]`")
_DOWNTIME_RE = re.compile(r"downtime[ \t]+(\S+)[ \t]+(\S+)(?:[ \t]+(.*))?", re.IGNORECASE)
_ENABLE_USAGE = "usage: `enable HOST [restore] [dry-run]` (take HOST out of maintenance)"


@dataclass(frozen=True, slots=True)
class Help:
    pass


@dataclass(frozen=True, slots=True)
class Status:
    #: a host or a pool name; None for every host
    target: str | None = None


@dataclass(frozen=True, slots=True)
class Ack:
    incident_id: int
    comment: str = ""


@dataclass(frozen=True, slots=True)
class Script:
    host: str
    script: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Maintenance:
    host: str
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class Enable:
    """Leave maintenance; ``restore`` brings back the VMs the maintenance moved away."""

    host: str
    restore: bool = False
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class DowntimeAdd:
    """A downtime from now on, for every check of the host."""

    host: str
    seconds: float
    comment: str = ""


@dataclass(frozen=True, slots=True)
class DowntimeCancel:
    downtime_id: int


@dataclass(frozen=True, slots=True)
class DowntimeList:
    host: str | None = None


#: what a Confirm button can carry out
Confirmable = Maintenance | Enable
Command = (Help | Status | Ack | Script | Maintenance | Enable | DowntimeAdd | DowntimeCancel
           | DowntimeList)

#: the least role each command needs (api.auth.ROLES orders them)
ROLE_NEEDED: dict[type[Command], str] = {
    Help: "viewer", Status: "viewer", Ack: "operator", Script: "operator",
    Maintenance: "operator", Enable: "operator", DowntimeAdd: "operator",
    DowntimeCancel: "operator", DowntimeList: "viewer",
}


def required_role(command: Command) -> str:
    return ROLE_NEEDED[type(command)]


def _name(word: str, what: str) -> str:
    name = word[1:] if word.startswith("#") else word
    if not HOST_RE.fullmatch(name):
        raise UsageError(f"bad {what} name {word[:80]!r}")
    return name


def parse_command(text: str, *, slash: str = "") -> Command:
    """Parse the text of a slash command. ``slash`` is the command's name: text sent to a
    ``/xescript`` command is read as ``XESCRIPT <text>``."""
    if len(text) > MAX_MESSAGE:
        raise UsageError(f"message too long ({len(text)} characters, at most {MAX_MESSAGE})")
    if _CONTROL_RE.search(text):
        raise UsageError("one line please: control characters and newlines are refused")
    if slash.lower() == "/xescript":
        text = f"XESCRIPT {text}"
    words = text.split()
    if not words or words[0].lower() == "help":
        if len(words) > 1:
            raise UsageError(f"help takes nothing; commands: {USAGE}")
        return Help()
    verb = words[0].lower()
    if verb == "status":
        if len(words) > 2:
            raise UsageError("usage: `status [HOST|POOL]`")
        return Status(_name(words[1], "host or pool") if len(words) == 2 else None)
    if verb == "ack":
        m = _ACK_RE.fullmatch(text.strip())
        if m is None:
            raise UsageError("usage: `ack ID [comment]` (the incident's number)")
        comment = (m.group(2) or "").strip()
        if len(comment) > MAX_COMMENT:
            raise UsageError(f"comment too long (at most {MAX_COMMENT} characters)")
        return Ack(int(m.group(1)), comment)
    if verb == "xescript":
        parsed = parse_chat(text)
        return Script(parsed.host, parsed.script, parsed.args)
    if verb == "maintenance":
        if len(words) < 2:
            raise UsageError("usage: `maintenance HOST [dry-run]`")
        options = {w.lower() for w in words[2:]}
        if not options <= _DRY_RUN or len(words) > 3:
            raise UsageError("usage: `maintenance HOST [dry-run]`")
        return Maintenance(_name(words[1], "host"), dry_run=bool(options))
    if verb == "enable":
        opts = [w.lower() for w in words[2:]]
        dry = [o for o in opts if o in _DRY_RUN]
        if (len(words) < 2 or len(set(opts)) != len(opts) or len(dry) > 1
                or not all(o == "restore" or o in _DRY_RUN for o in opts)):
            raise UsageError(_ENABLE_USAGE)
        return Enable(_name(words[1], "host"), restore="restore" in opts, dry_run=bool(dry))
    if verb == "downtime":
        return _downtime(text.strip(), words)
    raise UsageError(f"unknown command {words[0][:40]!r}; commands: {USAGE}")


def _downtime(text: str, words: list[str]) -> Command:
    sub = words[1].lower() if len(words) > 1 else ""
    if sub == "list" and len(words) <= 3:
        return DowntimeList(_name(words[2], "host") if len(words) == 3 else None)
    if sub == "cancel" and len(words) == 3 and words[2].lstrip("#").isdigit() \
            and len(words[2]) <= 13:
        return DowntimeCancel(int(words[2].lstrip("#")))
    m = _DOWNTIME_RE.fullmatch(text)
    if m is None or sub in ("list", "cancel"):
        raise UsageError(_DOWNTIME_USAGE)
    try:
        seconds = parse_duration(m.group(2))
    except ValueError as exc:
        raise UsageError(f"{exc}; {_DOWNTIME_USAGE}") from None
    comment = (m.group(3) or "").strip()
    if len(comment) > MAX_COMMENT:
        raise UsageError(f"comment too long (at most {MAX_COMMENT} characters)")
    return DowntimeAdd(_name(m.group(1), "host"), seconds, comment)


# --- confirmation tokens -------------------------------------------------------------------

_TOKEN_VERSION = "v1"  # noqa: S105 - a format version, not a password
_KEY_LABEL = b"poolwarden/slack/confirmation/v1"


@dataclass(frozen=True, slots=True)
class Confirmation:
    """A verified confirmation: what to do, for whom, until when."""

    command: Confirmable
    user_id: str
    team_id: str
    expires: int
    nonce: str


def _key(secret: str) -> bytes:
    """A key of its own for confirmations, derived from the signing secret: a token can
    never be mistaken for (or help forge) a Slack request signature."""
    return hmac.new(secret.encode("utf-8"), _KEY_LABEL, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, body: str) -> str:
    return _b64(hmac.new(_key(secret), f"{_TOKEN_VERSION}.{body}".encode("ascii"),
                         hashlib.sha256).digest())


def sign_confirmation(secret: str, command: Confirmable, user_id: str, team_id: str,
                      now: float, *, ttl: int = CONFIRM_TTL, nonce: str | None = None,
                      ) -> str:
    """The value of a Confirm button: ``v1.<payload>.<mac>`` (URL-safe base64)."""
    if command.dry_run:
        raise UsageError("a dry run needs no confirmation")
    payload: dict[str, Any] = {
        "a": "maintenance", "h": command.host, "u": user_id, "t": team_id,
        "e": int(now) + ttl, "n": nonce or secrets.token_urlsafe(12)}
    if isinstance(command, Enable):
        payload |= {"a": "enable", "r": command.restore}
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8"))
    return f"{_TOKEN_VERSION}.{body}.{_mac(secret, body)}"


def open_confirmation(secret: str, token: str, user_id: str, team_id: str,
                      now: float) -> Confirmation:
    """The confirmation ``token`` carries, if it is ours, unexpired and ``user_id``'s.

    ``AuthenticationFailed`` for a token that is malformed or not signed with our key
    (forged, or altered); ``OperationRefused`` when it is another person's or expired.
    """
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != _TOKEN_VERSION or len(token) > 1000:
        raise AuthenticationFailed("malformed confirmation")
    body, mac = parts[1], parts[2]
    if not hmac.compare_digest(_mac(secret, body).encode("ascii"),
                               mac.encode("ascii", "replace")):
        raise AuthenticationFailed("confirmation not signed by poolwarden")
    try:
        doc: Any = json.loads(_unb64(body))
    except (ValueError, binascii.Error) as exc:  # cannot happen for a token we signed
        raise AuthenticationFailed("malformed confirmation") from exc
    if not isinstance(doc, dict) or doc.get("a") not in ("maintenance", "enable"):
        raise AuthenticationFailed("unknown confirmed action")
    host, expires = doc.get("h"), doc.get("e")
    if not isinstance(host, str) or not HOST_RE.fullmatch(host) or not isinstance(expires,
                                                                                   int):
        raise AuthenticationFailed("malformed confirmation")
    if doc.get("u") != user_id or doc.get("t") != team_id:
        raise OperationRefused("only the person who asked can confirm this")
    if now > expires:
        raise OperationRefused("this confirmation has expired: ask again")
    command: Confirmable = (Enable(host, restore=doc.get("r") is True)
                            if doc["a"] == "enable" else Maintenance(host))
    return Confirmation(command, user_id, team_id, expires, str(doc.get("n", "")))


__all__ = ["CONFIRM_TTL", "USAGE", "Ack", "Command", "Confirmable", "Confirmation",
           "DowntimeAdd", "DowntimeCancel", "DowntimeList", "Enable",
           "Help", "Maintenance", "Script", "Status", "open_confirmation", "parse_command",
           "required_role", "sign_confirmation"]
