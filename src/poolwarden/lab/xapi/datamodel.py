"""The XenAPI datamodel as data, read from the bundled ``xenapi.json.gz``.

The simulator is driven by it rather than by hand-written tables: it knows every class,
field (type, qualifier, default) and message (parameters, implicit or not), so it can
reject unknown methods, check parameter counts, and return *complete* records — every
field a real XAPI returns — with the simulated values laid over the defaults.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any
from xmlrpc.client import DateTime

NULL_REF = "OpaqueRef:NULL"
EPOCH = "19700101T00:00:00Z"

#: Parameters added in releases newer than the bundled json (XENAPI.md): (class, message)
#: → names of trailing optional parameters. xapi accepts calls with or without them.
LATER_OPTIONAL_PARAMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("host", "disable"): ("auto_enable",),
}
#: Fewest parameters xapi accepts where it is more lenient than the json says.
# why: xapi accepts login_with_password(uname, pwd) without version/originator, and
# countless scripts call it that way.
MIN_PARAMS: dict[tuple[str, str], int] = {("session", "login_with_password"): 2}


@dataclass(frozen=True, slots=True)
class Type:
    """A parsed datamodel type: kind ∈ string int float bool datetime ref enum set map
    record option; ``name`` is the class (ref) or enum name; ``args`` the element types."""

    kind: str
    name: str = ""
    args: tuple[Type, ...] = ()


_PRIMITIVES = {"string", "int", "float", "bool", "datetime"}


def parse_type(text: str) -> Type:
    """Parse a json type string such as ``(string -> enum host_allowed_operations) map``."""
    text = text.strip()
    if text.endswith(") map") and text.startswith("("):
        inner = text[1:-5]
        depth = 0
        for i, ch in enumerate(inner):
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth == 0 and inner.startswith(" -> ", i):
                return Type("map", args=(parse_type(inner[:i]), parse_type(inner[i + 4 :])))
        raise ValueError(f"bad map type {text!r}")
    for suffix in ("set", "option", "record"):
        if text.endswith(" " + suffix):
            inner = text[: -len(suffix) - 1]
            if suffix == "record":
                return Type("record", name=inner)
            return Type(suffix, args=(parse_type(inner),))
    if text.endswith(" ref"):
        return Type("ref", name=text[:-4])
    if text.startswith("enum "):
        return Type("enum", name=text[5:])
    if text in _PRIMITIVES:
        return Type(text)
    return Type("enum", name=text)  # params name enums without the "enum " prefix


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    type: Type
    writable: bool  # qualifier RW: has an implicit set_<field>


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: Type


@dataclass(frozen=True, slots=True)
class MessageSpec:
    cls: str
    name: str
    params: tuple[Param, ...]
    min_params: int
    implicit: bool
    result: str

    @property
    def needs_session(self) -> bool:
        """Every message but the logins takes a session as its first parameter."""
        return bool(self.params) and self.params[0].type == Type("ref", name="session")

    @property
    def arguments(self) -> tuple[Param, ...]:
        """The parameters a handler receives (the session argument dropped)."""
        return self.params[1:] if self.needs_session else self.params


@dataclass(slots=True)
class ClassSpec:
    name: str
    fields: dict[str, FieldSpec]
    messages: dict[str, MessageSpec]
    defaults: dict[str, Any] = field(default_factory=dict)


class Datamodel:
    """All classes of the API, with per-class default records computed once."""

    def __init__(self, raw: list[dict[str, Any]]) -> None:
        self._raw_defaults: dict[tuple[str, str], str] = {}
        self.enums: dict[str, list[str]] = {}
        for cls in raw:
            for enum in cls.get("enums", []):
                self.enums[enum["name"]] = [v["name"] for v in enum["values"]]
        self.classes: dict[str, ClassSpec] = {c["name"]: self._class(c) for c in raw}
        for spec in self.classes.values():
            spec.defaults = {
                f.name: self._default(f.type, self._raw_defaults.get((spec.name, f.name)))
                for f in spec.fields.values()
            }
        #: lowercase class name (as event.from spells it) → class name
        self.by_lower = {name.lower(): name for name in self.classes}

    def _class(self, c: dict[str, Any]) -> ClassSpec:
        fields = {}
        for f in c["fields"]:
            fields[f["name"]] = FieldSpec(f["name"], parse_type(f["type"]), f["qualifier"] == "RW")
            if "default" in f:
                self._raw_defaults[(c["name"], f["name"])] = f["default"]
        messages = {m["name"]: self._message(c["name"], m) for m in c["messages"]}
        return ClassSpec(c["name"], fields, messages)

    @staticmethod
    def _message(owner: str, m: dict[str, Any]) -> MessageSpec:
        params = [Param(p["name"], parse_type(p["type"])) for p in m["params"]]
        full = len(params)
        # why: the json does not say which parameter came in which release, only how
        # often a message was "extended"; each extension appended (at least) one optional
        # trailing parameter, and xapi still accepts the older, shorter calls.
        extended = sum(t["transition"] == "extended" for t in m["lifecycle"]["transitions"])
        lowest = max(1 if params and params[0].name == "session_id" else 0, full - extended)
        later = LATER_OPTIONAL_PARAMS.get((owner, m["name"]), ())
        params += [Param(n, Type("bool")) for n in later]
        lowest = MIN_PARAMS.get((owner, m["name"]), lowest)
        return MessageSpec(
            owner, m["name"], tuple(params), lowest, bool(m["implicit"]), m["result"][0],
        )

    def zero(self, t: Type) -> Any:
        """The value a field has when nothing else is known: "", 0, False, NULL, [], {}."""
        match t.kind:
            case "string" | "option":
                return ""
            case "int":
                return 0
            case "float":
                return 0.0
            case "bool":
                return False
            case "datetime":
                return DateTime(EPOCH)
            case "ref":
                return NULL_REF
            case "enum":
                values = self.enums.get(t.name, [])
                return values[0] if values else ""
            case "set":
                return []
            case _:  # map, record
                return {}

    def _default(self, t: Type, raw: str | None) -> Any:
        if raw is None:
            return self.zero(t)
        try:
            return self._parse_value(t, raw.strip())
        except (ValueError, IndexError):
            return self.zero(t)

    def _parse_value(self, t: Type, raw: str) -> Any:
        match t.kind:
            case "string":
                return raw[1:-1] if raw.startswith('"') and raw.endswith('"') else raw
            case "int":
                return int(raw)
            case "float":
                return float(raw)
            case "bool":
                return raw == "true"
            case "datetime":
                return DateTime(raw)
            case "ref":
                return NULL_REF if raw in ("Null", NULL_REF) else raw
            case "set":
                items = [x for x in raw.strip("{}").split(", ") if x]
                return [self._parse_value(t.args[0], x) for x in items]
            case "map":
                out = {}
                for item in (x for x in raw.strip("{}").split(", ") if x):
                    k, v = item.split(" -> ", 1)
                    out[self._parse_value(t.args[0], k)] = self._parse_value(t.args[1], v)
                return out
            case _:
                return raw

    def message(self, cls: str, name: str) -> MessageSpec | None:
        """The message ``cls.name``, or None when the API has no such method."""
        spec = self.classes.get(cls)
        return spec.messages.get(name) if spec else None

    def fields(self, cls: str) -> dict[str, FieldSpec]:
        return self.classes[cls].fields

    def defaults(self, cls: str) -> dict[str, Any]:
        """Default record of ``cls``; shared, never mutate it."""
        return self.classes[cls].defaults


@cache
def load() -> Datamodel:
    """Parse the bundled datamodel once per process (it is 1.4 MB of json)."""
    data = resources.files("poolwarden.lab").joinpath("data/xenapi.json.gz").read_bytes()
    return Datamodel(json.loads(gzip.decompress(data)))
