"""The chat syntax ``XESCRIPT #host #script-name ARG1 ARG2 ...``: a pure parser.

Chat is the least trusted input poolwarden takes, so the parser is strict: one line,
the keyword, a ``#host`` and a ``#script`` that are plain names, then arguments split on
spaces and tabs (extra spaces tolerated). It does not interpret quotes: an argument is
exactly the characters between blanks, and the script's declared patterns decide later
whether it is acceptable (:meth:`poolwarden.scripts.catalog.Script.validate_args`).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from poolwarden.errors import UsageError
from poolwarden.scripts.catalog import validate_name

KEYWORD = "XESCRIPT"
HOST_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}")
_BLANKS = re.compile(r"[ \t]+")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
MAX_MESSAGE = 4096
SYNTAX = "XESCRIPT #host #script-name ARG1 ARG2 ..."


class ChatCommand(NamedTuple):
    host: str
    script: str
    args: tuple[str, ...]


def parse_chat(message: str) -> ChatCommand:
    """Parse one chat message; refuse anything that is not exactly the syntax above."""
    if len(message) > MAX_MESSAGE:
        raise UsageError(f"message too long ({len(message)} characters, at most {MAX_MESSAGE})")
    if _CONTROL_RE.search(message):
        raise UsageError(f"control characters or newlines are not allowed; use: {SYNTAX}")
    words = [w for w in _BLANKS.split(message.strip(" \t")) if w]
    if not words or words[0].upper() != KEYWORD:
        raise UsageError(f"not an XESCRIPT command; use: {SYNTAX}")
    if len(words) < 3:
        raise UsageError(f"a #host and a #script are required; use: {SYNTAX}")
    host, script = words[1], words[2]
    if not host.startswith("#") or not HOST_RE.fullmatch(host[1:]):
        raise UsageError(f"bad host {host[:80]!r}: write it as #hostname; use: {SYNTAX}")
    if not script.startswith("#"):
        raise UsageError(f"bad script {script[:80]!r}: write it as #script-name; use: {SYNTAX}")
    return ChatCommand(host[1:], validate_name(script[1:]), tuple(words[3:]))
