"""Nagios threshold ranges (``10``, ``10:``, ``~:10``, ``10:20``, ``@10:20``).

Exactly the monitoring-plugins semantics (MONITORING.md): ``[@]start:end`` with inclusive
endpoints; an omitted start (with or without its ``:``) is 0, ``~`` is −∞, an omitted end
is +∞; without ``@`` a value *outside* [start, end] alerts, with ``@`` a value *inside*.
Unlike the C library (which reads garbage as 0 through ``strtod``) a malformed range is an
error, because a silently wrong threshold is worse than a refused one.

Ranges are parsed once (config load, CLI parsing) and evaluated millions of times, so
:meth:`Range.alerts` is two float comparisons and nothing else.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from poolwarden.errors import UsageError
from poolwarden.messages import State

__all__ = ["InvalidRange", "Range", "evaluate", "format_range", "parse_range"]

#: a plain decimal number: no ``inf``/``nan``/hex/underscores (``float()`` would take them)
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INF = math.inf
_isnan = math.isnan

_OK, _WARNING, _CRITICAL, _UNKNOWN = State.OK, State.WARNING, State.CRITICAL, State.UNKNOWN


class InvalidRange(UsageError):
    """A threshold range that does not follow the Nagios syntax.

    A :class:`UsageError` because ranges mostly come from the command line; configuration
    loaders catch it and re-raise a :class:`~poolwarden.errors.ConfigError` naming the file.
    """

    def __init__(self, text: str, problem: str) -> None:
        self.text, self.problem = text, problem
        super().__init__(f"invalid threshold range {text!r}: {problem}")


@dataclass(frozen=True, slots=True)
class Range:
    """A parsed range; ``alerts(value)`` says whether ``value`` crosses it."""

    start: float = 0.0
    end: float = _INF
    inside: bool = False  # the ``@`` prefix: alert inside [start, end] instead of outside
    #: the text it was parsed from, for messages; not part of equality
    text: str = field(default="", compare=False)

    def alerts(self, value: float) -> bool:
        """True when ``value`` is a problem for this range (NaN alerts unless ``@``)."""
        if self.inside:
            return self.start <= value <= self.end
        return not self.start <= value <= self.end

    def __str__(self) -> str:
        return self.text or format_range(self)


def _number(text: str, part: str) -> float:
    if not _NUMBER.fullmatch(part):
        raise InvalidRange(text, f"{part!r} is not a number")
    value = float(part)
    if not math.isfinite(value):
        raise InvalidRange(text, f"{part!r} is out of range (use ~ for minus infinity)")
    return value


def parse_range(text: str) -> Range:
    """Parse one range; raise :class:`InvalidRange` (naming the text) when malformed."""
    body = text.strip()
    inside = body.startswith("@")
    if inside:
        body = body[1:]
    if not body:
        raise InvalidRange(text, "empty range")
    start_text, colon, end_text = body.partition(":")
    if not colon:  # "10" means 0:10
        start_text, end_text = "", body
    start = -_INF if start_text == "~" else _number(text, start_text) if start_text else 0.0
    end = _number(text, end_text) if end_text else _INF
    if start > end:
        raise InvalidRange(text, f"start {start:g} is greater than end {end:g}")
    return Range(start, end, inside, text.strip())


def _fmt(x: float) -> str:
    s = repr(x)
    return s[:-2] if s.endswith(".0") else s


def format_range(r: Range) -> str:
    """The canonical text of ``r`` (shortest form); ``parse_range`` reads it back equal."""
    prefix = "@" if r.inside else ""
    end = "" if r.end == _INF else _fmt(r.end)
    if r.start == 0.0 and end:
        return prefix + end
    start = "~" if r.start == -_INF else _fmt(r.start)
    return f"{prefix}{start}:{end}"


def evaluate(value: float, warn: Range | None, crit: Range | None) -> State:
    """The plugin state of ``value``: CRITICAL checked first, then WARNING, else OK.

    NaN (a reading of ``U``, an unreadable sensor) is UNKNOWN: no threshold can judge it.
    """
    if _isnan(value):
        return _UNKNOWN
    if crit is not None and crit.alerts(value):
        return _CRITICAL
    if warn is not None and warn.alerts(value):
        return _WARNING
    return _OK
