"""Plugin output and perfdata parsing (Nagios Plugin Development Guidelines)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poolwarden.collect.plugin import PluginResult, parse_output, parse_perfdata
from poolwarden.messages import PerfData, State


def test_check_ping_style_items() -> None:
    items = parse_perfdata("rta=0.049000ms;100.000000;500.000000;0.000000 pl=0%;20;60;0")
    assert items == (
        PerfData("rta", 0.049, "ms", "100.000000", "500.000000", 0.0, None),
        PerfData("pl", 0.0, "%", "20", "60", 0.0, None),
    )


@pytest.mark.parametrize("uom", ["", "s", "ms", "us", "%", "B", "KB", "MB", "GB", "TB", "c"])
def test_units_of_measure(uom: str) -> None:
    (item,) = parse_perfdata(f"x=12.5{uom};1;2;0;100")
    assert (item.value, item.uom, item.min, item.max) == (12.5, uom, 0.0, 100.0)


@pytest.mark.parametrize(("text", "label"), [
    ("'disk /var'=5", "disk /var"),
    ("'a=b'=5", "a=b"),
    ("'it''s'=5", "it's"),
    ("'''quoted'''=5", "'quoted'"),
    ("'x y''z = w'=5", "x y'z = w"),
    ("a=b=5", "a=b"),  # unquoted: the label ends at the last '='
    ("temp/CPU1=5", "temp/CPU1"),
])
def test_labels(text: str, label: str) -> None:
    (item,) = parse_perfdata(text)
    assert (item.label, item.value) == (label, 5.0)


def test_empty_and_missing_fields_are_none() -> None:
    assert parse_perfdata("a=1;;;;") == (PerfData("a", 1.0),)
    assert parse_perfdata("a=1") == (PerfData("a", 1.0),)
    assert parse_perfdata("a=1;;5") == (PerfData("a", 1.0, crit="5"),)
    assert parse_perfdata("a=-1.5e3KB;~:10;@0:5;-10;1e4;extra") == (
        PerfData("a", -1500.0, "KB", "~:10", "@0:5", -10.0, 1e4),)


def test_undetermined_value_is_nan() -> None:
    (item,) = parse_perfdata("temp=U;60;80")
    assert math.isnan(item.value)
    assert item.warn == "60"


def test_garbage_items_are_skipped_not_fatal() -> None:
    text = ("good=1 novalue= =5 label-only 'unclosed=3 x")
    assert parse_perfdata(text) == (PerfData("good", 1.0),)
    text = "a=1 b=abc c=1,5 d=2ms e=0x10 ''=4 f=3;;;zz;9"
    assert parse_perfdata(text) == (
        PerfData("a", 1.0), PerfData("d", 2.0, "ms"), PerfData("f", 3.0, max=9.0))
    assert parse_perfdata("'a b'c=1 next=2") == (PerfData("next", 2.0),)
    assert parse_perfdata("") == ()
    assert parse_perfdata("   \t ") == ()


def test_whitespace_between_items() -> None:
    assert parse_perfdata("  a=1\tb=2   c=3 ") == (
        PerfData("a", 1.0), PerfData("b", 2.0), PerfData("c", 3.0))


def test_output_text_only() -> None:
    assert parse_output("OK - all fine\n") == ("OK - all fine", "", ())
    assert parse_output("") == ("", "", ())


def test_output_with_long_output_and_continued_perfdata() -> None:
    stdout = (
        "DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n"
        "/ 15272 MB (77%);\n"
        "/boot 68 MB (69%);\n"
        "/home 69357 MB (27%);\n"
        "/var/log 819 MB (84%); | /boot=68MB;88;93;0;98\n"
        "/home=69357MB;253404;253409;0;253414\n"
        "/var/log=818MB;970;975;0;980\n"
    )
    text, long_output, perf = parse_output(stdout)
    assert text == "DISK OK - free space: / 3326 MB (56%);"
    assert long_output == ("/ 15272 MB (77%);\n/boot 68 MB (69%);\n/home 69357 MB (27%);\n"
                           "/var/log 819 MB (84%);")
    assert [p.label for p in perf] == ["/", "/boot", "/home", "/var/log"]
    assert perf[3] == PerfData("/var/log", 818.0, "MB", "970", "975", 0.0, 980.0)


def test_long_output_without_perfdata_and_crlf() -> None:
    text, long_output, perf = parse_output("WARNING: x\r\nline 1\r\nline 2\r\n")
    assert (text, long_output, perf) == ("WARNING: x", "line 1\nline 2", ())


def test_perfdata_only_after_second_bar() -> None:
    text, long_output, perf = parse_output("OK\nmore\n| a=1\nb=2")
    assert (text, long_output) == ("OK", "more")
    assert [p.label for p in perf] == ["a", "b"]


def test_to_check_result_keeps_long_output() -> None:
    r = PluginResult(State.WARNING, 1, "WARN", "detail", (PerfData("a", 1.0),), 0.5)
    cr = r.to_check_result("xs1", "plugin/x", 100.0)
    assert (cr.host, cr.check, cr.state, cr.output, cr.ts, cr.duration) == (
        "xs1", "plugin/x", State.WARNING, "WARN\ndetail", 100.0, 0.5)
    assert cr.perfdata == (PerfData("a", 1.0),)
    assert not cr.unreachable


label_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20)


def quote(label: str) -> str:
    return "'" + label.replace("'", "''") + "'"


@given(st.lists(st.tuples(label_text, st.floats(allow_nan=False, allow_infinity=False,
                                                width=32)), max_size=6))
def test_quoted_labels_round_trip(items: list[tuple[str, float]]) -> None:
    text = " ".join(f"{quote(label)}={value!r}s;1;2" for label, value in items)
    parsed = parse_perfdata(text)
    assert [(p.label, p.value, p.uom, p.warn, p.crit) for p in parsed] == [
        (label, value, "s", "1", "2") for label, value in items]


@given(st.text(max_size=200))
def test_never_raises_on_arbitrary_text(text: str) -> None:
    for item in parse_perfdata(text):
        assert item.label
    parse_output(text)
