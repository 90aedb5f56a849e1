"""The wire messages: lossless round trips, and every hostile input turned into Rejected."""

from __future__ import annotations

import contextlib
import json
import math
import threading
from dataclasses import replace
from typing import Any

import pytest
from pydantic import ValidationError

from poolwarden.distributed.wire import (
    MAX_MESSAGE_BYTES,
    MAX_RESULTS,
    Heartbeat,
    RejectCounter,
    Rejected,
    ResultBatch,
    WireResult,
    WorkItem,
    decode,
    encode,
)
from poolwarden.errors import PoolwardenError
from poolwarden.messages import CheckResult, PerfData, Reading, State


def full_result(**over: Any) -> CheckResult:
    """A CheckResult with every field set to a non-default value."""
    return replace(CheckResult(
        "xs1", "snmp/temperature/CPU1 Temp", State.CRITICAL,
        "CPU1 Temp 91 C (device: criticalUpper)\nsecond line", 1_700_000_000.25, 0.125,
        (PerfData("temp", 91.0, "C", "70", "85", 0.0, 120.0),
         PerfData("'odd label'=x", -3.5e-7, "%", "@10:20", None, None, None)),
        Reading("temperature", "CPU1 Temp", 91.0, "C", 70.0, 85.0, 5.0, 0.0, "criticalUpper"),
        unreachable=True), **over)


def work() -> WorkItem:
    return WorkItem(job="plugin/ssh/xs1", zone="dc1", host="xs1", partition=7, issued_at=100.0,
                    deadline=160.0, params={"address": "10.0.0.1", "bmc_address": "10.1.0.1",
                                            "bmc_port": "161", "profile": "idrac"})


def batch(results: list[CheckResult] | None = None) -> ResultBatch:
    return ResultBatch(sender="dc1-a", zone="dc1", partition=7, job="snmp/xs1",
                       results=[WireResult.from_result(r) for r in results or [full_result()]])


def rejected(data: bytes, expect: set[str] | None = None) -> Rejected:
    with pytest.raises(Rejected) as info:
        decode(data, expect)
    return info.value


def mutate(msg: Any, path: list[Any], value: Any) -> bytes:
    """The encoded ``msg`` with the field at ``path`` replaced (or added)."""
    obj = json.loads(encode(msg))
    node = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return json.dumps(obj, allow_nan=True).encode()


# -- round trips ----------------------------------------------------------------------------
def test_check_result_round_trips_losslessly_with_every_field() -> None:
    original = full_result()
    back = decode(encode(batch([original])))
    assert isinstance(back, ResultBatch)
    assert back.check_results() == [original]
    assert back.results[0].to_result().state is State.CRITICAL


def test_defaults_round_trip() -> None:
    original = CheckResult("xs2", "plugin/ssh", State.OK, "", 0.0)
    back = decode(encode(batch([original])))
    assert isinstance(back, ResultBatch)
    assert back.check_results() == [original]


def test_non_finite_perfdata_survives_as_strings() -> None:
    original = full_result(perfdata=(PerfData("u", math.nan, "", None, None, -math.inf,
                                              math.inf),))
    data = encode(batch([original]))
    json.loads(data, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert b'"NaN"' in data
    assert b'"-Infinity"' in data
    back = decode(data)
    assert isinstance(back, ResultBatch)
    (p,) = back.check_results()[0].perfdata
    assert math.isnan(p.value)
    assert (p.min, p.max) == (-math.inf, math.inf)


def test_work_item_and_heartbeat_round_trip() -> None:
    item = work()
    assert decode(encode(item), {"work"}) == item
    hb = Heartbeat(sender="dc1-a", zone="dc1", ts=5.5, inflight=3, buffered=12)
    assert decode(encode(hb)) == hb
    assert encode(item).startswith(b'{"v":1,"kind":"work",')  # compact, versioned
    assert item.expired(161.0)
    assert not item.expired(159.0)


def test_models_are_frozen() -> None:
    with pytest.raises(ValidationError):
        work().zone = "dc2"  # type: ignore[misc]


# -- rejections: each reason ------------------------------------------------------------------
@pytest.mark.parametrize(("data", "reason_class"), [
    (b"", "not_json"),
    (b"\xff\xfe not utf-8", "not_json"),
    (b'{"v": 1, "kind": "work"', "not_json"),
    (b'{"v": NaN}', "not_json"),
    (b"[" * 50_000, "not_json"),  # deep nesting: no RecursionError escapes
    (b"[1, 2]", "not_object"),
    (b'"work"', "not_object"),
    (b"null", "not_object"),
    (b'{"kind": "work"}', "version"),
    (b'{"v": 2, "kind": "work"}', "version"),
    (b'{"v": "1", "kind": "work"}', "version"),
    (b'{"v": true, "kind": "work"}', "version"),
    (b'{"v": 1.0, "kind": "work"}', "version"),
    (b'{"v": 1}', "kind"),
    (b'{"v": 1, "kind": "bogus"}', "kind"),
    (b'{"v": 1, "kind": ["work"]}', "kind"),
])
def test_each_rejection_reason(data: bytes, reason_class: str) -> None:
    exc = rejected(data)
    assert exc.reason_class == reason_class
    assert exc.kind == "unknown"
    assert isinstance(exc, PoolwardenError)
    assert not exc.retryable


def test_unexpected_kind_is_rejected() -> None:
    exc = rejected(encode(work()), {"results"})
    assert (exc.reason_class, exc.kind) == ("unexpected", "work")


def test_oversize_is_rejected_before_parsing() -> None:
    exc = rejected(b" " * (MAX_MESSAGE_BYTES + 1))
    assert exc.reason_class == "oversize"


def test_validation_reason_names_the_field() -> None:
    exc = rejected(mutate(batch(), ["results", 0, "state"], "BROKEN"))
    assert (exc.reason_class, exc.kind) == ("invalid", "results")
    assert str(exc) == "invalid: results.0.state"


def test_reason_never_echoes_hostile_text() -> None:
    evil = "\x1b[31mrm -rf /\n" + "A" * 500
    exc = rejected(mutate(work(), [evil], 1))  # an extra field with a hostile name
    assert exc.reason_class == "invalid"
    assert "\x1b" not in exc.reason
    assert "\n" not in exc.reason
    assert len(exc.reason) < 100


# -- hostile inputs -----------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "value"), [
    (["extra"], "field"),                       # extra fields are forbidden
    (["partition"], "7"),                        # wrong types are not coerced
    (["partition"], 7.0),
    (["partition"], True),
    (["partition"], -1),
    (["partition"], 10**400),
    (["issued_at"], "100"),
    (["deadline"], 50.0),                        # before issued_at
    (["deadline"], "Infinity"),                  # perfdata's spelling, refused elsewhere
    (["issued_at"], "NaN"),
    (["issued_at"], -1.0),
    (["zone"], "dc1.evil"),                      # not a subject token
    (["zone"], "*"),
    (["zone"], ""),
    (["job"], "j" * 513),
    (["host"], "h" * 10_000),
    (["params"], {f"k{i}": "v" for i in range(33)}),
    (["params"], {"address": 1}),
    (["params"], {"address": "x" * 1025}),
    (["params"], ["address"]),
])
def test_hostile_work_items(path: list[Any], value: Any) -> None:
    exc = rejected(mutate(work(), path, value))
    assert (exc.reason_class, exc.kind) == ("invalid", "work")
    assert exc.reason.startswith(f"invalid: {path[0]}")


def test_kind_must_match_exactly() -> None:
    assert rejected(mutate(work(), ["kind"], "work ")).reason_class == "kind"
    assert rejected(mutate(work(), ["kind"], "WORK")).reason_class == "kind"


@pytest.mark.parametrize(("path", "value"), [
    (["results", 0, "output"], "x" * (256 * 1024 + 1)),
    (["results", 0, "ts"], "Infinity"),
    (["results", 0, "duration"], "NaN"),
    (["results", 0, "duration"], -0.5),
    (["results", 0, "reading", "value"], "NaN"),
    (["results", 0, "reading", "value"], "55"),
    (["results", 0, "perfdata", 0, "value"], "nan"),      # only the exact spellings
    (["results", 0, "perfdata", 0, "value"], "12"),
    (["results", 0, "perfdata", 0, "label"], ""),
    (["results", 0, "perfdata"], [{"label": "a", "value": 1}] * 1001),
    (["results", 0, "unreachable"], "yes"),
    (["results", 0, "unreachable"], 1),
    (["results", 0, "state"], 2),
    (["results", 0, "extra"], None),
    (["results", 0, "reading", "extra"], None),
    (["results"], "not a list"),
    (["sender"], "dc1 a"),
])
def test_hostile_result_batches(path: list[Any], value: Any) -> None:
    exc = rejected(mutate(batch(), path, value))
    assert exc.reason_class == "invalid"
    assert exc.reason.startswith("invalid: ")


def test_results_per_batch_are_bounded() -> None:
    minimal = {"host": "h", "check": "c", "state": "OK", "output": "", "ts": 1.0}
    obj = json.loads(encode(batch()))
    obj["results"] = [minimal] * MAX_RESULTS
    assert isinstance(decode(json.dumps(obj).encode()), ResultBatch)
    obj["results"].append(minimal)
    assert rejected(json.dumps(obj).encode()).reason == "invalid: results"


def test_heartbeat_counts_are_bounded() -> None:
    hb = Heartbeat(sender="s", zone="z", ts=1.0)
    assert rejected(mutate(hb, ["inflight"], -1)).reason == "invalid: inflight"
    assert rejected(mutate(hb, ["buffered"], 10**10)).reason == "invalid: buffered"


def test_from_result_refuses_what_the_wire_would_reject() -> None:
    with pytest.raises(ValidationError):
        WireResult.from_result(full_result(ts=math.inf))
    with pytest.raises(ValidationError):
        WireResult.from_result(full_result(perfdata=(PerfData("a", 1.0),) * 1001))


def test_decode_never_raises_anything_but_rejected() -> None:
    good = encode(batch())
    for i in range(0, len(good), 7):  # every truncation and a corruption at many offsets
        for data in (good[:i], good[:i] + b"\x00" + good[i + 1:]):
            with contextlib.suppress(Rejected):
                decode(data)


# -- the counter ---------------------------------------------------------------------------------
def test_reject_counter_counts_by_kind_and_reason_across_threads() -> None:
    counter = RejectCounter()

    def hammer() -> None:
        for _ in range(1000):
            counter.record(rejected(b"x"))
            counter.add("results", "invalid")

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter.counts() == {("unknown", "not_json"): 4000, ("results", "invalid"): 4000}
    assert counter.total() == 8000
