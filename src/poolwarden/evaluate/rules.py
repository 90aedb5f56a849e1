"""Rules: which problems lead to which action item. Config models and a PURE matcher.

A rule is ``match`` (criteria over a HARD problem) → ``action`` (``notify``, ``evacuate``,
``shutdown``, ``script`` or ``none``) with a ``severity``. :func:`match` is a pure function
of the rules, one :class:`StateChange` and a :class:`MatchContext` (the host's pool, since
when the problem is HARD, whether the host's BMC answers): no clock, no I/O, so the
engine can re-run it on every tick and tests can check every case without a pool.

Matching semantics (``docs/rules.md`` states them for operators):

- Only HARD problem changes match (a SOFT state is still being retried; OK is no problem).
- Rules are read in order. **First match wins per action kind**: the first matching
  ``notify`` rule gives the notify decision, the first matching ``evacuate``/``shutdown``
  rule the maintenance decision (they are one kind: a host is emptied once), the first
  ``script`` rule the script decision. A matching ``none`` rule is returned (so the engine
  can log it) and stops the reading: later rules are not considered ("leave these alone").
- ``sustained``: the decision is *due* once the problem has been HARD in its current state
  that long (``Decision.due_at``); the engine keeps it pending until then.
- Safety, whatever the rules say: ``evacuate``/``shutdown`` never fire on an UNKNOWN state,
  on the BMC agent check itself, or while the host's agent does not answer — UNKNOWN
  means poolwarden cannot see the sensor, which is no reason to move a pool's VMs. Such a
  decision comes back with ``refused`` set to the reason, so the engine records why.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from poolwarden.config.types import Duration
from poolwarden.evaluate.state import AGENT_CHECK
from poolwarden.messages import Reading, State, StateChange, StateType

__all__ = ["KNOWN_KINDS", "Action", "Decision", "Detected", "MatchContext", "RuleConfig",
           "RuleMatch", "ScriptSpec", "describe_reading", "duplicate_rule_names", "match",
           "problem_kind", "when"]

#: kinds the collector's profiles emit; a name close to one of these is taken for a typo
KNOWN_KINDS = frozenset({
    "temperature", "fan", "power_supply", "redundancy", "system", "voltage", "battery",
    "intrusion", "processor", "memory", "disk", "load", "interface", "partition", "device",
})
_KIND = re.compile(r"^[a-z][a-z0-9_]*$")
_NAME = r"^[A-Za-z0-9_.:-]+$"
PROBLEM_STATES = ("WARNING", "CRITICAL", "UNKNOWN")


class Action(StrEnum):
    NOTIFY = "notify"
    EVACUATE = "evacuate"  # host maintenance: hand over the master role, empty, disable
    SHUTDOWN = "shutdown"  # evacuate, then power the host off
    SCRIPT = "script"  # a vetted script on the host (runner: a later issue)
    NONE = "none"  # matched: do nothing, and read no further rule

    @property
    def destructive(self) -> bool:
        """Changes the pool: goes through the per-pool queue, the lease and the limits."""
        return self in (Action.EVACUATE, Action.SHUTDOWN)

    @property
    def group(self) -> str:
        """The "action kind" for first-match-wins: evacuate and shutdown are one."""
        return "maintenance" if self.destructive else self.value


class RuleSeverity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


def _listify(value: Any) -> Any:
    """``x`` → ``[x]``: every criterion takes one value or a list."""
    return [value] if isinstance(value, str) else value


def _states(value: Any) -> Any:
    value = _listify(value)
    if not isinstance(value, list):
        return value
    out = []
    for v in value:
        name = str(v.name if isinstance(v, State) else v).upper()
        if name == "OK":
            raise ValueError("OK is not a problem: rules match WARNING, CRITICAL or UNKNOWN")
        if name not in PROBLEM_STATES:
            raise ValueError(f"unknown state {v!r} (one of: {', '.join(PROBLEM_STATES)})")
        out.append(name)
    return out


def _kinds(value: Any) -> Any:
    value = _listify(value)
    if not isinstance(value, list):
        return value
    out = []
    for v in value:
        kind = str(v).strip().lower()
        if not _KIND.match(kind):
            raise ValueError(f"kind {v!r} must be a lower-case word such as temperature")
        close = difflib.get_close_matches(kind, KNOWN_KINDS, n=1, cutoff=0.8)
        if kind not in KNOWN_KINDS and close:
            # why: a misspelt kind would silently never match; the rule would never fire
            raise ValueError(f"unknown kind {kind!r} (did you mean {close[0]!r}?)")
        out.append(kind)
    return out


Globs = Annotated[tuple[str, ...], BeforeValidator(_listify)]
Kinds = Annotated[tuple[str, ...], BeforeValidator(_kinds)]
States = Annotated[tuple[str, ...], BeforeValidator(_states)]


class _Model(BaseModel):
    # why: a typo (``sustain:``) must fail at load, not silently match everything
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleMatch(_Model):
    """Criteria over a problem; all given ones must hold. Globs are shell-style (``xs-*``)."""

    kind: Kinds | None = None  # temperature, fan, power_supply, redundancy, …
    check: Globs | None = None  # glob on the check id, e.g. "snmp/temperature/CPU*"
    state: States | None = None  # None: any problem state
    device_status: Globs | None = None  # globs on the device's own status, any case
    host: Globs | None = None
    pool: Globs | None = None
    sustained: Duration | None = None  # HARD in its current state at least this long

    def hits(self, change: StateChange, pool: str) -> bool:
        """The criteria (not the time, not the safety rules) against one change."""
        status = change.reading.status.lower() if change.reading is not None else ""
        return ((self.kind is None or problem_kind(change) in self.kind)
                and (self.state is None or change.new_state.name in self.state)
                and _any(self.check, change.check)
                and _any(self.host, change.host)
                and _any(self.pool, pool)
                and (self.device_status is None or
                     any(fnmatch.fnmatchcase(status, p.lower()) for p in self.device_status)))


class ScriptSpec(_Model):
    """A script from the restricted scripts directory and its arguments (shape only)."""

    name: str = Field(pattern=_NAME)
    args: list[str] = []


class RuleConfig(_Model):
    """One ``rules:`` entry."""

    name: str | None = Field(default=None, pattern=_NAME)
    match: RuleMatch
    action: Action
    severity: RuleSeverity | None = None  # None: critical for CRITICAL, else warning
    shutdown: bool = False  # with evacuate: power the host off once it is empty
    script: ScriptSpec | None = None

    @model_validator(mode="after")
    def _coherent(self) -> RuleConfig:
        if self.action is Action.SCRIPT and self.script is None:
            raise ValueError("action script needs script: {name: …, args: […]}")
        if self.action is not Action.SCRIPT and self.script is not None:
            raise ValueError(f"script: is only used by action script, not {self.action}")
        if self.shutdown and self.action is not Action.EVACUATE:
            raise ValueError("shutdown: true goes with action evacuate "
                             "(action shutdown always powers the host off)")
        if self.action.destructive:
            m = self.match
            if m.kind is None and m.check is None:
                raise ValueError(f"an {self.action} rule must say which problems it is for "
                                 "(match.kind or match.check)")
            if m.state is not None and "UNKNOWN" in m.state:
                raise ValueError(f"action {self.action} never fires on UNKNOWN: UNKNOWN means "
                                 "poolwarden cannot see the sensor, not that it is bad")
        return self

    def label(self, index: int) -> str:
        """The rule's name, else its position (``rules[2]``), for reports and keys."""
        return self.name or f"rules[{index}]"


def duplicate_rule_names(rules: Sequence[RuleConfig]) -> list[str]:
    """Names given to more than one rule (for the config's cross-field validation)."""
    names = [r.name for r in rules if r.name]
    return sorted({n for n in names if names.count(n) > 1})


def _any(globs: tuple[str, ...] | None, value: str) -> bool:
    return globs is None or any(fnmatch.fnmatchcase(value, g) for g in globs)


def problem_kind(change: StateChange) -> str:
    """The problem's category: the sensor's kind, a ``kind`` label, the ``snmp/<kind>/…``
    segment of the check id, else the check id's first segment (``plugin``)."""
    if change.reading is not None:
        return change.reading.kind
    if "kind" in change.labels:
        return change.labels["kind"]
    parts = change.check.split("/")
    return parts[1] if parts[0] == "snmp" and len(parts) > 2 else parts[0]


def when(t: float | None) -> str:
    """Epoch seconds as people read them in a report."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if t else "-"


def _num(v: float) -> str:
    return f"{v:g}"


def describe_reading(r: Reading) -> str:
    """``CPU1 Temp = 101 °C (device thresholds: critical ≥ 98; device status ok)``."""
    limits = [f"{name} {op} {_num(v)}" for name, op, v in (
        ("warning", "≥", r.warn), ("critical", "≥", r.crit),
        ("warning", "≤", r.warn_low), ("critical", "≤", r.crit_low)) if v is not None]
    value = "no value" if r.value is None else f"{_num(r.value)} {r.unit}".strip()
    extra = [f"device thresholds: {', '.join(limits)}"] if limits else []
    extra += [f"device status {r.status}"] if r.status else []
    return f"{r.name} = {value}" + (f" ({'; '.join(extra)})" if extra else "")


@dataclass(frozen=True, slots=True)
class Detected:
    """The problem a decision answers: what the reports say was detected, and when."""

    host: str
    pool: str
    check: str
    kind: str
    state: str
    since: float  # HARD in this state since
    output: str
    reading: Reading | None = None

    @classmethod
    def of(cls, change: StateChange, pool: str, since: float) -> Detected:
        return cls(change.host, pool, change.check, problem_kind(change),
                   change.new_state.name, since, change.output, change.reading)

    @property
    def key(self) -> str:
        return f"{self.host}|{self.check}"

    def summary(self) -> str:
        what = describe_reading(self.reading) if self.reading is not None else self.output
        return (f"{self.check} on {self.host} (pool {self.pool or '?'}) is {self.state} "
                f"since {when(self.since)}: {what}")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["since_text"] = when(self.since)
        return d


@dataclass(frozen=True, slots=True)
class MatchContext:
    """What the matcher needs beyond the change; the engine fills it in."""

    pool: str = ""
    #: when the problem became HARD in its current state; None: the change's own ts
    since: float | None = None
    #: the host's BMC agent answers (a non-OK ``snmp/agent`` means it does not)
    agent_reachable: bool = True


@dataclass(frozen=True, slots=True)
class Decision:
    """A rule fired for a problem. ``refused`` non-empty: matched but must not be done."""

    rule: str
    index: int
    action: Action
    severity: str
    due_at: float  # the engine acts at or after this time (``sustained``)
    shutdown: bool = False
    script: ScriptSpec | None = None
    refused: str = ""

    def ready(self, now: float) -> bool:
        return now >= self.due_at


def _refusal(change: StateChange, ctx: MatchContext) -> str:
    """Why a destructive action must not be taken on this change ("" if it may)."""
    if change.check == AGENT_CHECK:
        return f"{change.host}'s BMC agent does not answer: nothing is known about its hardware"
    if change.new_state is State.UNKNOWN:
        return f"{change.check} is UNKNOWN: poolwarden cannot see it, which is no reason to act"
    if not ctx.agent_reachable:
        return f"{change.host}'s BMC agent does not answer: the reading cannot be confirmed"
    return ""


def match(rules: Sequence[RuleConfig], change: StateChange,
          context: MatchContext) -> list[Decision]:
    """The decisions ``rules`` take for ``change``, in rule order (see the module doc)."""
    if change.state_type is not StateType.HARD or change.new_state is State.OK:
        return []
    since = change.ts if context.since is None else context.since
    taken: set[str] = set()
    out: list[Decision] = []
    for i, rule in enumerate(rules):
        if rule.action.group in taken or not rule.match.hits(change, context.pool):
            continue
        taken.add(rule.action.group)
        severity = rule.severity or (RuleSeverity.CRITICAL if change.new_state is
                                     State.CRITICAL else RuleSeverity.WARNING)
        out.append(Decision(
            rule=rule.label(i), index=i, action=rule.action, severity=str(severity),
            due_at=since + (rule.match.sustained or 0.0),
            shutdown=rule.action is Action.SHUTDOWN or rule.shutdown, script=rule.script,
            refused=_refusal(change, context) if rule.action.destructive else ""))
        if rule.action is Action.NONE:
            break  # "leave these alone": no later rule is read
    return out
