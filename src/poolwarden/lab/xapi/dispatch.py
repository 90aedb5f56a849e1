"""XML-RPC method dispatch, driven by the datamodel.

For every call: resolve ``[Async.]class.message`` (MESSAGE_METHOD_UNKNOWN), check the
parameter count (MESSAGE_PARAMETER_COUNT_MISMATCH), check the session, convert arguments
by their declared types (FIELD_TYPE_ERROR), check refs (HANDLE_INVALID), then run the
registered handler — or the generic implicit one (get_/set_/add_to_/… messages), or fail
with NOT_IMPLEMENTED for messages the lab does not simulate.
"""

from __future__ import annotations

import logging
import xmlrpc.client
from functools import partial
from typing import Any
from xml.parsers.expat import ExpatError

from poolwarden.lab.xapi import (  # noqa: F401  (imported to register their handlers)
    handlers_event,
    handlers_host,
    handlers_session,
    handlers_vm,
)
from poolwarden.lab.xapi.datamodel import NULL_REF, MessageSpec, Param
from poolwarden.lab.xapi.failure import XapiFailure
from poolwarden.lab.xapi.handlers_session import check_session
from poolwarden.lab.xapi.implicit import implicit
from poolwarden.lab.xapi.registry import HANDLERS, Call, Handler, Job
from poolwarden.lab.xapi.sim import Simulator

log = logging.getLogger(__name__)
#: Python spells ``event.from`` as ``event_from`` (``from`` is a keyword).
ALIASES = {"event_from": "event.from", "Async.event_from": "Async.event.from"}
NO_ASYNC = ("session", "event")


def to_wire(value: Any) -> Any:
    """XenAPI's encoding: ints as decimal strings, None as "" (void), containers recursed."""
    kind = type(value)
    if kind is str or kind is bool or kind is float:
        return value
    if kind is int:
        return str(value)
    if kind is dict:
        return {k: to_wire(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [to_wire(v) for v in value]
    if value is None:
        return ""
    return value  # DateTime


def _convert(param: Param, value: Any) -> Any:
    """Check one argument against its declared type; ints arrive as strings."""
    kind = param.type.kind
    try:
        if kind == "int" and not isinstance(value, bool):
            return int(value)
        if kind == "float" and not isinstance(value, bool):
            return float(value)
    except (TypeError, ValueError):
        raise XapiFailure("FIELD_TYPE_ERROR", param.name) from None
    expected: dict[str, type | tuple[type, ...]] = {
        "bool": bool, "set": (list, tuple), "map": dict,
        "string": str, "ref": str, "enum": str,
    }
    if kind in expected and not isinstance(value, expected[kind]):
        raise XapiFailure("FIELD_TYPE_ERROR", param.name)
    return list(value) if kind == "set" else value


class Dispatcher:
    """Turns XML-RPC request bodies into response bodies; shared by all host servers."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def handle(self, body: bytes, host: str) -> bytes:
        """One request → one response; API errors are Failure structs, never faults."""
        try:
            args, method = xmlrpc.client.loads(body)
        except (ExpatError, ValueError, TypeError, xmlrpc.client.ResponseError) as exc:
            fault = xmlrpc.client.Fault(-32700, f"parse error: {exc}")
            return xmlrpc.client.dumps(fault, methodresponse=True).encode()
        try:
            value = self.call(method or "", args, host)
            response = {"Status": "Success", "Value": to_wire(value)}
        except XapiFailure as failure:
            response = {"Status": "Failure", "ErrorDescription": failure.description}
        except Exception as exc:  # a simulator bug must not kill the connection
            log.exception("lab: %s failed", method)
            response = {"Status": "Failure", "ErrorDescription": ["INTERNAL_ERROR", repr(exc)]}
        return xmlrpc.client.dumps((response,), methodresponse=True, allow_none=True).encode()

    def resolve(self, method: str) -> tuple[MessageSpec, bool]:
        """(message, is_async) for a wire method name."""
        name = ALIASES.get(method, method)
        is_async = name.startswith("Async.")
        cls, _, msg = name.removeprefix("Async.").partition(".")
        spec = self.sim.dm.message(cls, msg) if msg else None
        if spec is None or (is_async and (spec.implicit or cls in NO_ASYNC)):
            raise XapiFailure("MESSAGE_METHOD_UNKNOWN", method)
        return spec, is_async

    def call(self, method: str, args: tuple[Any, ...], host: str) -> Any:
        """Run one call as the server on ``host`` received it; raises XapiFailure."""
        spec, is_async = self.resolve(method)
        if not spec.min_params <= len(args) <= len(spec.params):
            raise XapiFailure(
                "MESSAGE_PARAMETER_COUNT_MISMATCH", method, len(spec.params), len(args),
            )
        session = None
        if spec.needs_session:
            session = str(args[0])
            check_session(self.sim, session)
            args = args[1:]
        args = tuple(_convert(p, a) for p, a in zip(spec.arguments, args, strict=False))
        fn = HANDLERS.get((spec.cls, spec.name))
        if fn is None:
            if not spec.implicit:
                raise XapiFailure("NOT_IMPLEMENTED", method)
            fn = partial(implicit, spec)
        call = Call(self.sim, method, host, session)
        if is_async:
            return self._start_async(call, spec, fn, args)
        try:
            return self._run(call, spec, fn, args)
        finally:
            if call.owns_task and call.task:
                with self.sim.db.lock:
                    if self.sim.db.exists("task", call.task):
                        self.sim.db.destroy("task", call.task)

    def _run(self, call: Call, spec: MessageSpec, fn: Handler, args: tuple[Any, ...]) -> Any:
        db = self.sim.db
        with db.lock:
            for param, value in zip(spec.arguments, args, strict=False):
                # why: a ref of another class or a stale ref is HANDLE_INVALID [class, ref];
                # NULL is left to the handler (some parameters accept it).
                if param.type.kind == "ref" and value != NULL_REF:
                    db.overlay(param.type.name, value)
            result = fn(call, *args)
        while isinstance(result, Job):
            result = result.run()
        return result

    def _start_async(
        self, call: Call, spec: MessageSpec, fn: Handler, args: tuple[Any, ...],
    ) -> str:
        """Return a task at once; the call runs in a worker and settles the task."""
        task = call.task = self.sim.new_task(call.method)

        def work() -> None:
            try:
                result = self._run(call, spec, fn, args)
            except XapiFailure as failure:
                self.sim.fail_task(task, failure)
            except Exception as exc:
                log.exception("lab: %s failed", call.method)
                self.sim.fail_task(task, XapiFailure("INTERNAL_ERROR", repr(exc)))
            else:
                self.sim.finish_task(task, result)

        self.sim.spawn(work, f"lab-{call.method}")
        return task
