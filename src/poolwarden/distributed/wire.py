"""The messages that cross the bus between masters and satellites (docs/distributed.md).

Anything read from NATS is untrusted input: any process that can publish on a subject can
send anything. Every message is therefore a frozen, strict pydantic model with a schema
version ``v`` and a ``kind``, every string, list and dict has a bound, and :func:`decode`
turns *every* problem into :class:`Rejected` (never a library exception), so a receiver
counts it, terminates it and carries on.

Floats are finite except in perfdata, where a plugin's ``U`` (undetermined) is NaN and an
absurd exponent is infinite: those travel as the strings ``"NaN"``, ``"Infinity"``,
``"-Infinity"`` so the JSON stays standard and the round trip stays lossless.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Collection
from typing import Annotated, Any, Final, Literal, cast

import pydantic_core
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from poolwarden.errors import PoolwardenError
from poolwarden.messages import CheckResult, PerfData, Reading, State

__all__ = [
    "KINDS", "MAX_MESSAGE_BYTES", "MAX_RESULTS", "REASON_CLASSES", "Heartbeat", "RejectCounter",
    "Rejected", "ResultBatch", "WireMessage", "WirePerfData", "WireReading", "WireResult",
    "WorkItem", "decode", "encode",
]

VERSION: Final = 1
MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024
MAX_RESULTS: Final = 10_000
MAX_PERFDATA: Final = 1_000
MAX_PARAMS: Final = 32
#: a plugin keeps 64 KiB of stdout and of stderr; room for both plus the truncation note
MAX_OUTPUT: Final = 256 * 1024
MAX_COUNT: Final = 1_000_000_000
MAX_PARTITION: Final = 65_535

#: the reason classes of a rejection: the label values of poolwarden_bus_rejected_total
REASON_CLASSES: Final = ("oversize", "not_json", "not_object", "version", "kind", "unexpected",
                         "invalid", "subject")

# -- field types -------------------------------------------------------------------------
#: a NATS subject token (zone, sender): no dots, wildcards or spaces
Token = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Job = Annotated[str, StringConstraints(min_length=1, max_length=512)]
Short = Annotated[str, StringConstraints(max_length=255)]
Unit = Annotated[str, StringConstraints(max_length=32)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
ParamKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
ParamValue = Annotated[str, StringConstraints(max_length=1024)]
Output = Annotated[str, StringConstraints(max_length=MAX_OUTPUT)]
Epoch = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Partition = Annotated[int, Field(ge=0, le=MAX_PARTITION)]
StateName = Literal["OK", "WARNING", "CRITICAL", "UNKNOWN"]

_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _special_float(value: Any) -> Any:
    """``"NaN"``/``"Infinity"``/``"-Infinity"`` (how non-finite floats travel) → float."""
    if isinstance(value, str) and value in _SPECIAL:
        return _SPECIAL[value]
    return value


#: a perfdata number: may be NaN or infinite (sent as a string, see the module docstring)
AnyFloat = Annotated[float, Field(allow_inf_nan=True), BeforeValidator(_special_float)]


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False,
                              ser_json_inf_nan="strings")


# -- results -------------------------------------------------------------------------------
class WirePerfData(_Wire):
    label: Label
    value: AnyFloat
    uom: Unit = ""
    warn: Short | None = None
    crit: Short | None = None
    min: AnyFloat | None = None
    max: AnyFloat | None = None


class WireReading(_Wire):
    kind: Short
    name: Name
    value: float | None
    unit: Unit = ""
    warn: float | None = None
    crit: float | None = None
    warn_low: float | None = None
    crit_low: float | None = None
    status: Short = ""


class WireResult(_Wire):
    """:class:`poolwarden.messages.CheckResult` on the wire, field for field (its
    ``version`` is the enclosing message's ``v``)."""

    host: Name
    check: Job
    state: StateName
    output: Output
    ts: Epoch
    duration: Annotated[float, Field(ge=0)] = 0.0
    perfdata: list[WirePerfData] = Field(default_factory=list, max_length=MAX_PERFDATA)
    reading: WireReading | None = None
    unreachable: bool = False

    @classmethod
    def from_result(cls, r: CheckResult) -> WireResult:
        """Raises ``pydantic.ValidationError`` when ``r`` exceeds the wire's bounds."""
        reading = None
        if r.reading is not None:
            x = r.reading
            reading = WireReading(kind=x.kind, name=x.name, value=x.value, unit=x.unit,
                                  warn=x.warn, crit=x.crit, warn_low=x.warn_low,
                                  crit_low=x.crit_low, status=x.status)
        return cls(
            host=r.host, check=r.check, state=cast(StateName, r.state.name), output=r.output,
            ts=r.ts, duration=r.duration, reading=reading, unreachable=r.unreachable,
            perfdata=[WirePerfData(label=p.label, value=p.value, uom=p.uom, warn=p.warn,
                                   crit=p.crit, min=p.min, max=p.max) for p in r.perfdata],
        )

    def to_result(self) -> CheckResult:
        x = self.reading
        reading = None if x is None else Reading(
            x.kind, x.name, x.value, x.unit, x.warn, x.crit, x.warn_low, x.crit_low, x.status)
        return CheckResult(
            self.host, self.check, State[self.state], self.output, self.ts, self.duration,
            tuple(PerfData(p.label, p.value, p.uom, p.warn, p.crit, p.min, p.max)
                  for p in self.perfdata),
            reading, self.unreachable,
        )


# -- messages ------------------------------------------------------------------------------
class WorkItem(_Wire):
    """One due job for a zone's satellites; dropped by a satellite after ``deadline``.

    ``params`` carries non-secret target data only (address, BMC address and port,
    profile…): credentials come from each process's own configuration.
    """

    v: Literal[1] = 1
    kind: Literal["work"] = "work"
    job: Job
    zone: Token
    host: Name
    partition: Partition
    issued_at: Epoch
    deadline: Epoch
    params: dict[ParamKey, ParamValue] = Field(default_factory=dict, max_length=MAX_PARAMS)

    @field_validator("deadline")
    @classmethod
    def _after_issue(cls, deadline: float, info: ValidationInfo) -> float:
        issued = info.data.get("issued_at")
        if issued is not None and deadline < issued:
            raise ValueError("deadline before issued_at")
        return deadline

    def expired(self, now: float) -> bool:
        return now > self.deadline


class ResultBatch(_Wire):
    """The results of one execution of one job, for the owner of ``partition``."""

    v: Literal[1] = 1
    kind: Literal["results"] = "results"
    sender: Token
    zone: Token
    partition: Partition
    job: Job
    results: list[WireResult] = Field(max_length=MAX_RESULTS)

    def check_results(self) -> list[CheckResult]:
        return [r.to_result() for r in self.results]


class Heartbeat(_Wire):
    """A satellite is alive (core NATS, every second; never stored)."""

    v: Literal[1] = 1
    kind: Literal["heartbeat"] = "heartbeat"
    sender: Token
    zone: Token
    ts: Epoch
    inflight: Count = 0
    buffered: Count = 0


WireMessage = WorkItem | ResultBatch | Heartbeat
_MODELS: dict[str, type[WorkItem] | type[ResultBatch] | type[Heartbeat]] = {
    "work": WorkItem, "results": ResultBatch, "heartbeat": Heartbeat}
KINDS: Final = frozenset(_MODELS)


# -- encoding --------------------------------------------------------------------------------
class Rejected(PoolwardenError):
    """A message that is not one we accept; terminate it, never retry it.

    ``reason`` is short and safe to log (it never echoes the hostile input), ``reason_class``
    is one of :data:`REASON_CLASSES` and ``kind`` a known kind or ``"unknown"``: both are
    metric labels of bounded cardinality.
    """

    def __init__(self, reason: str, *, reason_class: str, kind: str = "unknown") -> None:
        self.reason, self.reason_class, self.kind = reason, reason_class, kind
        super().__init__(reason)


def encode(msg: WireMessage) -> bytes:
    """Compact JSON."""
    return msg.model_dump_json().encode()


_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def _where(exc: ValidationError) -> str:
    """``results.0.state``: the first failing field, stripped of anything odd (an extra
    field's name is attacker-chosen)."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    loc = ".".join(str(p) for p in errors[0]["loc"]) if errors else ""
    return _UNSAFE.sub("?", loc)[:80] or "message"


def decode(data: bytes, expect: Collection[str] | None = None) -> WireMessage:
    """Parse and validate ``data``; raises :class:`Rejected` and nothing else."""
    kind = "unknown"
    try:
        if len(data) > MAX_MESSAGE_BYTES:
            raise Rejected("oversize", reason_class="oversize")
        try:
            obj = pydantic_core.from_json(data, allow_inf_nan=False)
        except ValueError:
            raise Rejected("not JSON", reason_class="not_json") from None
        if not isinstance(obj, dict):
            raise Rejected("not a JSON object", reason_class="not_object")
        v = obj.get("v")
        if type(v) is not int or v != VERSION:
            raise Rejected("unknown version", reason_class="version")
        raw_kind = obj.get("kind")
        if not isinstance(raw_kind, str) or raw_kind not in _MODELS:
            raise Rejected("unknown kind", reason_class="kind")
        kind = raw_kind
        if expect is not None and kind not in expect:
            raise Rejected(f"unexpected kind {kind}", reason_class="unexpected", kind=kind)
        try:
            return _MODELS[kind].model_validate(obj)
        except ValidationError as exc:
            raise Rejected(f"invalid: {_where(exc)}", reason_class="invalid", kind=kind) from None
    except Rejected:
        raise
    except Exception as exc:  # the promise: no library error escapes
        raise Rejected("invalid: unreadable", reason_class="invalid", kind=kind) from exc


class RejectCounter:
    """Rejected messages by (kind, reason class), for ``/metrics``; shared across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def add(self, kind: str, reason_class: str) -> None:
        with self._lock:
            self._counts[kind, reason_class] += 1

    def record(self, exc: Rejected) -> None:
        self.add(exc.kind, exc.reason_class)

    def counts(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())
