"""Device profiles as data, and the one engine that reads any of them.

A profile (``collect/profiles/*.yaml``) names the tables to walk, the columns that join
into a sensor row, how to scale the reading *and* its thresholds, and how the device's
status codes map to poolwarden :class:`State`. The engine below has no vendor branches:
supporting a new BMC means writing a YAML file, not code.

Row model: a table ``oid`` is a conceptual row (``…Entry``); ``<oid>.<column>.<index>``
is one cell, cells with the same index form a row, one row becomes one sensor. A scalar
is a one-row table with index ``0``. A table's keys (see dell-idrac.yaml for a full one):
``columns`` alias → column number (or ``{col, enum}``), ``name`` templates over aliases
and ``{index}``, ``kind``, ``unit``, ``value`` (or ``value_ratio``), ``scale`` (applied
to the value *and* every threshold), ``status`` (alias + enum), ``thresholds`` role →
aliases, ``variants`` (per-row overrides by regex), ``faults`` (for the lab).
State: the worst of the device's status and the reading against the device's thresholds.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from poolwarden.collect.snmp import SnmpValue, as_text
from poolwarden.config.yamlsource import load_model
from poolwarden.errors import ConfigError
from poolwarden.messages import Reading, State

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
Role = Literal["warn", "crit", "warn_low", "crit_low"]
ROLES: tuple[Role, ...] = ("warn", "crit", "warn_low", "crit_low")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_OID = r"^\d+(\.\d+)+$"


def _state(value: Any) -> Any:
    if isinstance(value, str):
        if value.upper() not in State.__members__:
            raise ValueError(f"state must be one of {', '.join(State.__members__)}")
        return State[value.upper()]
    return value


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, str | int) else value


StateName = Annotated[State, BeforeValidator(_state)]
Oid = Annotated[str, Field(pattern=_OID)]
Aliases = Annotated[list[str], BeforeValidator(_listify)]
Decoded = tuple[str, StateName]  # (device label, poolwarden state)


def worst(states: Iterable[State]) -> State | None:
    """The most severe state (Icinga order), None for none."""
    return max(states, key=lambda s: s.severity, default=None)


class _Spec(BaseModel):
    # why: a typo in a profile key must fail at load, not silently read nothing.
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnumSpec(_Spec):
    """A status code → (label, state) map; ``bits`` for bitmasks (0 = no bit set)."""

    values: dict[str, Decoded] = {}
    bits: dict[int, Decoded] = {}
    default: StateName = State.UNKNOWN

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("values"), dict):
            data = {**data, "values": {_key(k): v for k, v in data["values"].items()}}
        return data

    @model_validator(mode="after")
    def _one_kind(self) -> EnumSpec:
        if bool(self.values) == bool(self.bits):
            raise ValueError("an enum has either 'values' or 'bits'")
        return self

    def decode(self, raw: SnmpValue) -> Decoded:
        if self.values:
            key = _key(raw)
            return self.values.get(key, (key or "?", self.default))
        number = parse_number(raw)
        if number is None:
            return (as_text(raw) or "?", self.default)
        n = int(number)
        if n == 0 and 0 in self.bits:
            return self.bits[0]
        hits = [self.bits[b] for b in sorted(self.bits) if b and n & b]
        state = worst(s for _, s in hits)
        if state is None:
            return (str(n), self.default)
        return (",".join(label for label, _ in hits), state)


class ColumnRef(_Spec):
    col: int = Field(ge=1)
    enum: str | None = None  # decode through this enum for names and dynamic roles


class StatusSpec(_Spec):
    column: str
    enum: str


class DynamicThreshold(_Spec):
    """A threshold column whose role (warn/crit) another column states (HPE)."""

    column: str
    role_column: str
    roles: dict[str, Role]  # role column's label (or raw text), any case → role

    @field_validator("roles")
    @classmethod
    def _lower(cls, roles: dict[str, Role]) -> dict[str, Role]:
        return {k.lower(): v for k, v in roles.items()}


class _Overridable(_Spec):
    """Fields a table sets and a variant may override (None: keep the table's)."""

    kind: str | None = None
    unit: str | None = None
    scale: float | None = None
    value: str | None = None
    value_ratio: tuple[str, str] | None = None
    status: list[StatusSpec] | None = None
    thresholds: dict[Role, Aliases] | None = None
    absent_if_zero: list[str] | None = None
    #: Lab fault name → {alias: raw value to SET}, e.g. fail: {status: 5}.
    faults: dict[str, dict[str, int | str]] | None = None


class Variant(_Overridable):
    """Rows whose ``column`` (alias, or ``name``) matches ``match`` get these fields."""

    match: str
    column: str = "name"
    skip: bool = False

    @field_validator("match")
    @classmethod
    def _regex(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"bad regular expression: {exc}") from exc
        return pattern


class TableSpec(_Overridable):
    id: str = Field(pattern=r"^[\w.-]+$")
    oid: Oid
    columns: dict[str, ColumnRef]
    #: Name templates with {alias} and {index}; the first that renders non-empty wins.
    name: Aliases = ["{index}"]
    dynamic_thresholds: list[DynamicThreshold] = []
    #: Raw texts meaning "no value" (e.g. "-1"); text without digits is null anyway.
    null_values: list[str] = []
    #: Parsed threshold values meaning "no threshold" (HPE and Supermicro use 0).
    no_threshold: list[float] = []
    variants: list[Variant] = []

    @model_validator(mode="before")
    @classmethod
    def _columns(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("columns"), dict):
            cols = {k: {"col": v} if isinstance(v, int) else v for k, v in data["columns"].items()}
            data = {**data, "columns": cols}
        return data

    @model_validator(mode="after")
    def _aliases(self) -> TableSpec:
        known = set(self.columns)
        used: list[str] = [p for t in self.name for p in _PLACEHOLDER.findall(t)]
        for spec in (self, *self.variants):
            used += [spec.value] if spec.value else []
            used += list(spec.value_ratio or ())
            used += [s.column for s in spec.status or ()]
            used += [a for names in (spec.thresholds or {}).values() for a in names]
            used += spec.absent_if_zero or []
            used += [a for fault in (spec.faults or {}).values() for a in fault]
        used += [v.column for v in self.variants if v.column != "name"]
        used += [a for d in self.dynamic_thresholds for a in (d.column, d.role_column)]
        unknown = sorted(set(used) - known - {"index"})
        if unknown:
            raise ValueError(f"table {self.id}: unknown column alias(es) {', '.join(unknown)}")
        return self

    def merged(self, variant: Variant | None) -> TableSpec:
        """This table with a variant's overrides applied."""
        if variant is None:
            return self
        fields = _Overridable.model_fields
        update = {k: getattr(variant, k) for k in fields if getattr(variant, k) is not None}
        return self.model_copy(update=update)

    def cell_oid(self, alias: str, index: str) -> str:
        return f"{self.oid}.{self.columns[alias].col}.{index}"


class DetectSpec(_Spec):
    #: sysObjectID prefixes; the longest match wins.
    sys_object_id: list[Oid] = []
    #: OIDs only this vendor answers; an answer beats any sysObjectID match.
    probe: list[Oid] = []


class Profile(_Spec):
    name: str
    description: str = ""
    detect: DetectSpec = DetectSpec()
    #: The lab's default recording for this profile (a file in lab/data/snmp/).
    lab_recording: str | None = None
    enums: dict[str, EnumSpec] = {}
    tables: list[TableSpec]

    @model_validator(mode="after")
    def _references(self) -> Profile:
        ids = Counter(t.id for t in self.tables)
        if dup := [i for i, n in ids.items() if n > 1]:
            raise ValueError(f"duplicate table id {dup[0]}")
        for table in self.tables:
            refs = [c.enum for c in table.columns.values() if c.enum]
            for spec in (table, *table.variants):
                refs += [s.enum for s in spec.status or ()]
            if missing := sorted(set(refs) - set(self.enums)):
                raise ValueError(f"table {table.id}: unknown enum(s) {', '.join(missing)}")
        return self

    @property
    def walk_oids(self) -> list[str]:
        """Distinct table OIDs, each walked once even if several tables share it."""
        return sorted({t.oid for t in self.tables}, key=oid_key)


# -- loading and detection ---------------------------------------------------------------


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


@cache
def load_profile(name_or_path: str) -> Profile:
    """A built-in profile by name (``dell-idrac``) or a profile YAML by path (cached)."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = PROFILE_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"unknown SNMP profile {name_or_path!r}; built-in: "
                f"{', '.join(available_profiles())} (or a path to a profile .yaml)")
    return load_model(Profile, path)


def detect_profile(
    sys_object_id: str | None, answered: Iterable[str], profiles: Iterable[Profile],
) -> Profile | None:
    """Pick the profile an agent's sysObjectID and answered probe OIDs point to."""
    answered = set(answered)
    best: tuple[int, Profile] | None = None
    for profile in profiles:
        score = 1000 if answered & set(profile.detect.probe) else 0
        for prefix in profile.detect.sys_object_id:
            if sys_object_id and (sys_object_id + ".").startswith(prefix + "."):
                score = max(score, len(prefix))
        if score and (best is None or score > best[0]):
            best = (score, profile)
    return best[1] if best else None


# -- the engine --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sensor:
    """One row read through a profile: where it came from and what it says."""

    table: TableSpec  # with its variant applied
    index: str
    reading: Reading
    state: State

    @property
    def check(self) -> str:
        return f"snmp/{self.reading.kind}/{self.reading.name}"


def oid_key(oid: str) -> tuple[int, ...]:
    return tuple(int(p) for p in oid.split(".") if p.isdigit())


def parse_number(raw: SnmpValue, nulls: Iterable[str] = ()) -> float | None:
    """A number from an int or a text like ``"32.000"``, ``" 24% of maximum"``; else None."""
    if raw is None or as_text(raw).strip() in nulls:
        return None
    if isinstance(raw, int | float):
        return float(raw)
    match = _NUMBER.search(as_text(raw))
    return float(match.group()) if match else None


def _key(raw: Any) -> str:
    return as_text(raw).strip().lower()


def table_rows(table: TableSpec, data: Mapping[str, SnmpValue]) -> dict[str, dict[int, SnmpValue]]:
    """Cells under the table's OID grouped by row index (in OID order)."""
    prefix, wanted = table.oid + ".", {c.col for c in table.columns.values()}
    rows: dict[str, dict[int, SnmpValue]] = {}
    for oid, value in data.items():
        if oid.startswith(prefix):
            col, _, index = oid[len(prefix):].partition(".")
            if index and col.isdigit() and int(col) in wanted:
                rows.setdefault(index, {})[int(col)] = value
    return {i: rows[i] for i in sorted(rows, key=oid_key)}


def evaluate(profile: Profile, data: Mapping[str, SnmpValue]) -> list[Sensor]:
    """Every sensor the profile finds in ``data`` (walked values by OID), names unique."""
    found = [
        sensor
        for table in profile.tables
        for index, cells in table_rows(table, data).items()
        if (sensor := _sensor(profile, table, index, cells)) is not None
    ]
    return _unique_names(found)


class _Row:
    """One row's cells by alias, as text, numbers and enum labels."""

    def __init__(self, profile: Profile, table: TableSpec, index: str,
                 cells: dict[int, SnmpValue]) -> None:
        self.profile, self.table, self.index = profile, table, index
        self.raw = {alias: cells.get(ref.col) for alias, ref in table.columns.items()}

    def text(self, alias: str) -> str:
        if alias == "index":
            return self.index
        ref, raw = self.table.columns[alias], self.raw[alias]
        if ref.enum and raw is not None:
            return self.profile.enums[ref.enum].decode(raw)[0]
        return as_text(raw).strip()

    def number(self, alias: str | None) -> float | None:
        return parse_number(self.raw[alias], self.table.null_values) if alias else None

    def name(self) -> str:
        for template in self.table.name:
            text = _PLACEHOLDER.sub(lambda m: self.text(m.group(1)), template).strip()
            if text:
                return text
        return f"{self.table.id} {self.index}"


def _sensor(profile: Profile, table: TableSpec, index: str,
            cells: dict[int, SnmpValue]) -> Sensor | None:
    row = _Row(profile, table, index, cells)
    name = row.name()
    variant = next((v for v in table.variants if re.search(
        v.match, name if v.column == "name" else row.text(v.column))), None)
    spec = table.merged(variant)
    if (variant and variant.skip) or not spec.kind:
        return None
    if spec.absent_if_zero and all(not row.number(a) for a in spec.absent_if_zero):
        return None  # an empty slot: no reading, no thresholds
    scale = spec.scale if spec.scale is not None else 1.0
    value = _value(row, spec, scale)
    limits = _thresholds(row, spec, scale)
    statuses = [profile.enums[s.enum].decode(row.raw[s.column])
                for s in spec.status or () if row.raw[s.column] is not None]
    if value is None and not statuses:
        return None  # nothing to judge: the row is not a sensor of this table
    judged = [s for _, s in statuses]
    if value is not None:
        judged.append(limit_state(value, limits))
    reading = Reading(
        kind=spec.kind, name=name, value=value, unit=spec.unit or "",
        warn=limits["warn"], crit=limits["crit"], warn_low=limits["warn_low"],
        crit_low=limits["crit_low"], status=",".join(label for label, _ in statuses),
    )
    state = worst(judged)  # not `or`: State.OK is falsy (IntEnum 0)
    return Sensor(spec, index, reading, State.UNKNOWN if state is None else state)


def _value(row: _Row, spec: TableSpec, scale: float) -> float | None:
    if spec.value_ratio:
        top, bottom = (row.number(a) for a in spec.value_ratio)
        return None if top is None or not bottom else round(top / bottom * scale, 6)
    value = row.number(spec.value)
    return None if value is None else round(value * scale, 6)


def _thresholds(row: _Row, spec: TableSpec, scale: float) -> dict[str, float | None]:
    """Device thresholds, scaled exactly like the reading (both tenths → °C)."""
    found: dict[str, float | None] = dict.fromkeys(ROLES)
    for role, aliases in (spec.thresholds or {}).items():
        found[role] = next((n for a in aliases if (n := row.number(a)) is not None
                            and n not in spec.no_threshold), None)
    for dyn in spec.dynamic_thresholds:
        dyn_role = dyn.roles.get(row.text(dyn.role_column).lower())
        n = row.number(dyn.column)
        if dyn_role and found[dyn_role] is None and n is not None and n not in spec.no_threshold:
            found[dyn_role] = n
    return {k: None if v is None else round(v * scale, 6) for k, v in found.items()}


def limit_state(value: float, limits: Mapping[str, float | None]) -> State:
    """IPMI semantics: a reading at or beyond a threshold has crossed it."""
    crit, crit_low = limits.get("crit"), limits.get("crit_low")
    warn, warn_low = limits.get("warn"), limits.get("warn_low")
    if (crit is not None and value >= crit) or (crit_low is not None and value <= crit_low):
        return State.CRITICAL
    if (warn is not None and value >= warn) or (warn_low is not None and value <= warn_low):
        return State.WARNING
    return State.OK


def _unique_names(sensors: list[Sensor]) -> list[Sensor]:
    """Repeated names of one kind (Supermicro's two ``12V``) get `` #<index>``."""
    counts = Counter((s.reading.kind, s.reading.name) for s in sensors)
    return [
        Sensor(s.table, s.index, replace(s.reading, name=f"{s.reading.name} #{s.index}"), s.state)
        if counts[(s.reading.kind, s.reading.name)] > 1 else s
        for s in sensors
    ]
