"""The lab xe's command line, parsed as ``newcli.ml`` and the CLI server parse it:
connection settings (``-s/-u/-pw``, ``server=``, ``XE_EXTRA_ARGS``) apart from the
command's ``key=value`` and ``--flag`` words."""

from __future__ import annotations

import os
from collections.abc import Sequence


def need(p: dict[str, str], key: str) -> str:
    if key not in p:
        raise UsageFailure(f"Required parameter not found: {key}")
    return p[key]


class UsageFailure(Exception):
    """``param_error``: the message, then the pointer to ``xe help``."""


_SHORT = {"-s": "server", "-h": "server", "-p": "port", "-u": "username", "-pw": "password",
          "-pwf": "passwordfile"}
_KEYWORDS = {"server", "port", "username", "password", "passwordfile", "nossl", "debug",
             "debugonfail", "traceparent"}


def parse_args(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """``newcli.ml``'s ``parse_args``: connection settings out (``XE_EXTRA_ARGS`` first,
    the command line overriding), everything else for the command."""
    conn: dict[str, str] = {}

    def take(args: Sequence[str]) -> list[str]:
        rest, i = [], 0
        while i < len(args):
            a = args[i]
            if a in _SHORT and i + 1 < len(args):
                conn[_SHORT[a]] = args[i + 1]
                i += 2
                continue
            key, sep, value = a.partition("=")
            if sep and key in _KEYWORDS:
                conn[key] = value
            elif a not in ("--nossl", "--debug", "--debug-on-fail"):
                rest.append(a)
            i += 1
        return rest

    extra = take([a for a in os.environ.get("XE_EXTRA_ARGS", "").split(",") if a])
    return conn, take(argv) + extra


def parse_params(words: Sequence[str]) -> tuple[dict[str, str], bool]:
    """``key=value`` and ``--flag`` (= ``flag=true``) words of a command."""
    params: dict[str, str] = {}
    for w in words:
        if w.startswith("--"):
            params[w[2:]] = "true"
            continue
        key, sep, value = w.partition("=")
        if not sep:
            raise UsageFailure(f"Syntax error: {w}")
        params[key] = value
    return params, params.pop("minimal", "false") == "true"
