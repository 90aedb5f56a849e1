"""The typed messages that flow between the pipeline's stages (DESIGN §1).

collect ──CheckResult──▶ evaluate ──StateChange──▶ incidents

They are frozen dataclasses of plain values, so that the same objects travel through the
in-process bus today and serialise to versioned JSON for NATS later (``to_json``).
An SNMP sensor is one check like any plugin: its ``CheckResult`` carries the reading,
the device's own thresholds and the device's status, and the state derived from them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import IntEnum, StrEnum
from typing import Any


class State(IntEnum):
    """Nagios/Icinga service states; the int is the plugin exit code."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @classmethod
    def from_exit_code(cls, code: int) -> State:
        """Exit codes outside 0..3 are UNKNOWN (monitoring-plugins guidelines)."""
        return cls(code) if 0 <= code <= 3 else cls.UNKNOWN

    @property
    def severity(self) -> int:
        """Order for "worst of": OK < UNKNOWN < WARNING < CRITICAL (Icinga's sort)."""
        return {0: 0, 3: 1, 1: 2, 2: 3}[int(self)]


class StateType(StrEnum):
    SOFT = "SOFT"
    HARD = "HARD"


@dataclass(frozen=True, slots=True)
class PerfData:
    """One ``'label'=value[UOM];[warn];[crit];[min];[max]`` item; ranges kept as text."""

    label: str
    value: float
    uom: str = ""
    warn: str | None = None
    crit: str | None = None
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    """A hardware sensor's reading with the *device's own* thresholds, already scaled.

    ``warn``/``crit`` are upper thresholds, ``warn_low``/``crit_low`` lower ones; None
    where the device defines none. ``status`` is the device's own verdict
    (e.g. ``criticalUpper``), kept verbatim for the operator.
    """

    kind: str  # temperature | fan | power_supply | redundancy | system | load | memory | …
    name: str
    value: float | None
    unit: str = ""
    warn: float | None = None
    crit: float | None = None
    warn_low: float | None = None
    crit_low: float | None = None
    status: str = ""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One execution of one check on one host."""

    host: str
    check: str  # stable id, e.g. "snmp/temperature/CPU1 Temp" or "plugin/ssh"
    state: State
    output: str
    ts: float  # epoch seconds when the result was obtained
    duration: float = 0.0
    perfdata: tuple[PerfData, ...] = ()
    reading: Reading | None = None
    #: the check could not reach its target at all (agent dead, timeout): UNKNOWN, and
    #: the evaluator folds these into one problem per host instead of one per sensor
    unreachable: bool = False
    version: int = 1

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["state"] = self.state.name
        return d


class FlappingChange(StrEnum):
    """Flapping started or ended with this result (Icinga's FlappingStart/FlappingEnd)."""

    START = "start"
    END = "end"


@dataclass(frozen=True, slots=True)
class StateChange:
    """Emitted by the state engine whenever a check's state or state type changes."""

    host: str
    check: str
    old_state: State
    new_state: State
    state_type: StateType
    attempt: int
    max_attempts: int
    ts: float
    output: str
    hard_change: bool  # a HARD state change (what opens/resolves incidents)
    flapping: bool = False
    reading: Reading | None = None
    labels: dict[str, str] = field(default_factory=dict)
    version: int = 1
    #: set on the change where flapping starts or ends, so notifications can be held and
    #: released; a flapping END may come with old_state == new_state (nothing else changed)
    flapping_change: FlappingChange | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["old_state"], d["new_state"] = self.old_state.name, self.new_state.name
        return d


@dataclass(frozen=True, slots=True)
class Alert:
    """An incident as the notifier sees it (Alertmanager's alert): firing or resolved.

    ``key`` is the problem's dedup key (``host|check``); ``labels`` carry at least
    ``severity`` (critical | warning | info), ``host``, ``pool``, ``check`` and ``kind``, the
    things routes match on and ``group_by`` groups by.
    """

    key: str
    labels: dict[str, str]
    summary: str
    firing: bool
    starts_at: float
    ts: float
    incident_id: int | None = None
    acknowledged: bool = False
    version: int = 1


@dataclass(frozen=True, slots=True)
class Message:
    """A one-off message to people: a remediation report, an escalation, a refusal.

    ``key`` is an idempotency key: the notifier sends a given key to a given receiver once,
    even if the message is submitted again (after a restart, or by a second master).
    """

    key: str
    severity: str  # critical | warning | info
    subject: str
    body: str
    labels: dict[str, str]
    ts: float
    version: int = 1
