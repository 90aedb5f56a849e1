"""Nagios threshold ranges: MONITORING.md's examples, errors, and properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from poolwarden.errors import UsageError
from poolwarden.evaluate.ranges import InvalidRange, Range, evaluate, format_range, parse_range
from poolwarden.messages import State

INF = math.inf


@pytest.mark.parametrize(("text", "alerting", "quiet"), [
    # MONITORING.md: `10` → <0 or >10; `10:` → <10; `~:10` → >10; `10:20` → <10 or >20;
    # `@10:20` → 10 ≤ x ≤ 20
    ("10", [-0.001, -5, 10.001, 11, 1e9], [0, 0.0, 5, 10]),
    ("10:", [9.999, 0, -1], [10, 10.5, 1e12]),
    ("~:10", [10.001, 11, 1e9], [10, 0, -1e12]),
    ("10:20", [9.99, 20.01, -3], [10, 15, 20]),
    ("@10:20", [10, 15, 20], [9.99, 20.01, -3]),
    # floats and negatives
    ("-5:-1", [-5.5, -0.5, 0], [-5, -3, -1]),
    ("-2.5:3.75", [-2.51, 3.76], [-2.5, 0, 3.75]),
    ("@-1:1", [-1, 0, 1], [-1.01, 1.01]),
    ("1e1:2E1", [9, 21], [10, 20]),
    (".5", [-0.1, 0.51], [0, 0.5]),
    ("~:", [], [-1e300, 0, 1e300]),
    ("@~:", [-1e300, 0, 1e300], []),
    ("0:", [-0.0001], [0, 5]),
    (":10", [-1, 11], [0, 10]),  # an empty start is 0, as in monitoring-plugins
    ("@5", [0, 5], [-1, 6]),
    ("  10:20 ", [9], [10, 20]),
])
def test_documented_examples(text: str, alerting: list[float], quiet: list[float]) -> None:
    r = parse_range(text)
    for v in alerting:
        assert r.alerts(v), (text, v)
    for v in quiet:
        assert not r.alerts(v), (text, v)


def test_parsed_fields() -> None:
    assert parse_range("10") == Range(0.0, 10.0, False)
    assert parse_range("10:") == Range(10.0, INF, False)
    assert parse_range("~:10") == Range(-INF, 10.0, False)
    assert parse_range("@10:20") == Range(10.0, 20.0, True)
    assert str(parse_range("@10:20")) == "@10:20"


@pytest.mark.parametrize(("text", "problem"), [
    ("", "empty"),
    ("@", "empty"),
    ("   ", "empty"),
    ("20:10", "greater than end"),
    ("@5:-5", "greater than end"),
    ("abc", "not a number"),
    ("10:abc", "not a number"),
    ("1:2:3", "not a number"),
    ("~", "not a number"),
    ("10:~", "not a number"),
    ("inf", "not a number"),
    ("nan", "not a number"),
    ("1_000", "not a number"),
    ("0x10", "not a number"),
    ("1e999", "out of range"),
    ("10 :20", "not a number"),
    ("@@1", "not a number"),
])
def test_malformed_ranges_are_clear_usage_errors(text: str, problem: str) -> None:
    with pytest.raises(InvalidRange, match=problem) as info:
        parse_range(text)
    assert isinstance(info.value, UsageError)
    assert repr(text) in str(info.value)  # says which text


def test_evaluate_checks_critical_first_then_warning() -> None:
    warn, crit = parse_range("80"), parse_range("90")
    assert evaluate(50, warn, crit) is State.OK
    assert evaluate(80, warn, crit) is State.OK  # endpoints are inclusive
    assert evaluate(85, warn, crit) is State.WARNING
    assert evaluate(90.5, warn, crit) is State.CRITICAL
    assert evaluate(-1, warn, crit) is State.CRITICAL
    assert evaluate(85, None, crit) is State.OK
    assert evaluate(95, warn, None) is State.WARNING
    assert evaluate(1e9, None, None) is State.OK
    assert evaluate(math.nan, warn, crit) is State.UNKNOWN
    assert evaluate(math.nan, None, None) is State.UNKNOWN


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
bound = st.one_of(st.none(), finite)


@st.composite
def ranges(draw: st.DrawFn) -> Range:
    a, b = draw(bound), draw(bound)
    start = -INF if a is None else a
    end = INF if b is None else b
    if start > end:
        start, end = end, start
    return Range(start, end, draw(st.booleans()))


def inverted(r: Range) -> Range:
    return Range(r.start, r.end, not r.inside)


@given(ranges(), st.one_of(finite, st.just(math.nan), st.just(INF), st.just(-INF)))
def test_at_is_the_exact_negation(r: Range, value: float) -> None:
    assert inverted(r).alerts(value) is (not r.alerts(value))


@given(ranges())
def test_endpoints_are_inclusive(r: Range) -> None:
    for endpoint in (r.start, r.end):
        if math.isfinite(endpoint):
            assert r.alerts(endpoint) is r.inside


@given(ranges(), finite)
def test_outside_semantics(r: Range, value: float) -> None:
    assert r.alerts(value) is ((r.start <= value <= r.end) is r.inside)


@given(ranges())
def test_format_parse_round_trip(r: Range) -> None:
    text = format_range(r)
    assert parse_range(text) == r
    assert format_range(parse_range(text)) == text


@given(finite, finite)
def test_plain_number_means_zero_to_n(n: float, value: float) -> None:
    assume(n >= 0)
    r = parse_range(repr(n))
    assert r.alerts(value) is (value < 0 or value > n)
