"""Readings history: batched writes (one executemany per batch) and the history query."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from poolwarden.incidents import SampleWriter
from poolwarden.incidents.samples import reading_value
from poolwarden.messages import CheckResult, PerfData, Reading, State
from poolwarden.store.db import Store

CHECK = "snmp/temperature/CPU1 Temp"


def result(ts: float, value: float | None = 50.0, *, host: str = "xs1", check: str = CHECK,
           state: State = State.OK) -> CheckResult:
    reading = Reading("temperature", "CPU1 Temp", value, "C", 80.0, 90.0)
    return CheckResult(host, check, state, f"{value} C", ts, reading=reading)


@contextmanager
def inserts(store: Store) -> Iterator[list[tuple[int, bool]]]:
    """(rows, executemany) of every INSERT INTO sample sent while the block runs."""
    seen: list[tuple[int, bool]] = []

    def record(_c: Any, _cur: Any, sql: str, params: Any, _ctx: Any, many: bool) -> None:
        if sql.startswith("INSERT INTO sample"):
            seen.append((len(params) if many else 1, many))

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", record)


def test_value_comes_from_the_reading_else_the_first_perfdata() -> None:
    assert reading_value(result(1.0, 42.0)) == 42.0
    plugin = CheckResult("xs1", "plugin/load", State.OK, "load", 1.0,
                         perfdata=(PerfData("load1", 0.7), PerfData("load5", 0.5)))
    assert reading_value(plugin) == 0.7
    assert reading_value(CheckResult("xs1", "plugin/ssh", State.OK, "ok", 1.0)) is None
    assert reading_value(result(1.0, None)) is None


def test_each_full_batch_is_one_executemany(store: Store) -> None:
    writer = SampleWriter(store, batch_size=100, max_delay=3600)
    with inserts(store) as seen:
        for i in range(250):
            writer.add(result(1000.0 + i, float(i)))
        assert seen == [(100, True), (100, True)]
        assert writer.pending() == 50
        assert writer.flush() == 50
    assert seen == [(100, True), (100, True), (50, True)]
    assert writer.written == 250
    assert len(writer.history("xs1", CHECK, since=0)) == 250


def test_a_slow_trickle_is_flushed_after_max_delay(store: Store) -> None:
    now = [0.0]
    writer = SampleWriter(store, batch_size=500, max_delay=5.0, clock=lambda: now[0])
    with inserts(store) as seen:
        writer.add(result(1.0))
        now[0] = 3.0
        writer.add(result(2.0))
        assert seen == []
        now[0] = 5.5
        writer.add(result(3.0))
    assert seen == [(3, True)]
    assert writer.pending() == 0


def test_history_of_one_check_oldest_first(store: Store) -> None:
    with SampleWriter(store) as writer:  # flushes on exit
        for ts, value, state in ((30.0, 85.0, State.WARNING), (10.0, 60.0, State.OK),
                                 (20.0, 70.0, State.OK), (40.0, None, State.UNKNOWN)):
            writer.add(result(ts, value, state=state))
        writer.add(result(25.0, 1.0, host="xs2"))
        writer.add(result(25.0, 2.0, check="snmp/fan/FAN1"))
    assert writer.history("xs1", CHECK, since=15.0) == [
        (20.0, 70.0, State.OK), (30.0, 85.0, State.WARNING), (40.0, None, State.UNKNOWN)]
    assert writer.history("xs1", CHECK, since=0.0, until=30.0) == [
        (10.0, 60.0, State.OK), (20.0, 70.0, State.OK)]
    assert writer.history("xs2", CHECK, since=0.0) == [(25.0, 1.0, State.OK)]
    assert writer.history("xs9", CHECK, since=0.0) == []


def test_batch_size_must_be_positive(store: Store) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        SampleWriter(store, batch_size=0)
