"""The implicit messages every class has, implemented once for all classes.

``get_all``, ``get_all_records``, ``get_record``, ``get_by_uuid``, ``get_by_name_label``,
``get_<field>``, ``set_<field>``, ``add_to_<map>``/``remove_from_<map>`` and
``add_<set>``/``remove_<set>``: their meaning follows from the message name and the
field's type in the datamodel, so no per-field code is needed.
"""

from __future__ import annotations

from typing import Any

from poolwarden.lab.xapi.datamodel import MessageSpec
from poolwarden.lab.xapi.db import Database
from poolwarden.lab.xapi.failure import XapiFailure
from poolwarden.lab.xapi.registry import Call


def _get(db: Database, cls: str, ref: str, field: str) -> Any:
    return db.get(cls, ref, field)


def _set(db: Database, cls: str, ref: str, field: str, value: Any) -> None:
    db.set(cls, ref, **{field: value})


def _add_to(db: Database, cls: str, ref: str, field: str, key: str, value: Any) -> None:
    current = db.get(cls, ref, field)
    if key in current:
        # why: xapi refuses to overwrite a map key silently; clients remove it first.
        raise XapiFailure("MAP_DUPLICATE_KEY", cls, field, ref, key)
    db.set(cls, ref, **{field: {**current, key: value}})


def _remove_from(db: Database, cls: str, ref: str, field: str, key: str) -> None:
    current = db.get(cls, ref, field)
    if key in current:
        db.set(cls, ref, **{field: {k: v for k, v in current.items() if k != key}})


def _add(db: Database, cls: str, ref: str, field: str, value: Any) -> None:
    current = db.get(cls, ref, field)
    if value not in current:
        db.set(cls, ref, **{field: [*current, value]})


def _remove(db: Database, cls: str, ref: str, field: str, value: Any) -> None:
    current = db.get(cls, ref, field)
    if value in current:
        db.set(cls, ref, **{field: [v for v in current if v != value]})


#: prefix → (operation, field kinds it applies to); longer prefixes first
_FIELD_OPS = (
    ("add_to_", _add_to, ("map",)),
    ("remove_from_", _remove_from, ("map",)),
    ("get_", _get, None),
    ("set_", _set, None),
    ("add_", _add, ("set",)),
    ("remove_", _remove, ("set",)),
)


def implicit(spec: MessageSpec, call: Call, *args: Any) -> Any:
    """Run an implicit message of ``spec.cls`` (the lock is held by the dispatcher)."""
    db, cls, name = call.sim.db, spec.cls, spec.name
    if name == "get_all":
        return db.refs(cls)
    if name == "get_all_records":
        return {r: db.record(cls, r) for r in db.refs(cls)}
    if name == "get_record":
        return db.record(cls, args[0])
    if name == "get_by_uuid":
        found = db.where(cls, uuid=args[0])
        if not found:
            raise XapiFailure("UUID_INVALID", cls, args[0])
        return found[0]
    if name == "get_by_name_label":
        return db.where(cls, name_label=args[0])
    fields = db.dm.fields(cls)
    for prefix, op, kinds in _FIELD_OPS:
        field = name.removeprefix(prefix)
        if name.startswith(prefix) and field in fields and (
            kinds is None or fields[field].type.kind in kinds
        ):
            return op(db, cls, args[0], field, *args[1:])
    raise XapiFailure("NOT_IMPLEMENTED", call.method)
