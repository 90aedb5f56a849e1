"""Routing (a pure function over labels) and the ``notify:`` section's validation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from poolwarden.config.yamlsource import parse_yaml, validate
from poolwarden.errors import ConfigError
from poolwarden.notify.config import NotifyConfig, QuietHours, Route
from poolwarden.notify.router import matches, route, route_id

RECEIVERS = {
    "oncall": ["json://pager.example/hook", "mailto://oncall@example.com"],
    "sysadmin": ["mailto://sysadmin@example.com"],
    "directors": ["mailto://directors@example.com"],
    "storage": ["mailto://storage@example.com"],
}


def cfg(*routes: dict[str, Any], **kw: Any) -> NotifyConfig:
    return NotifyConfig.model_validate({"receivers": RECEIVERS, "routes": list(routes), **kw})


SKETCH = cfg(  # DESIGN §7's example, plus a storage team that also sees its alerts
    {"match": {"kind": ["disk", "raid"]}, "receivers": ["storage"], "continue": True},
    {"match": {"severity": "critical"}, "receivers": ["oncall", "sysadmin"], "repeat": "30m",
     "escalate_after": "15m", "escalate_to": "directors"},
    {"match": {"severity": "warning"}, "receivers": ["sysadmin"],
     "quiet_hours": "22:00-07:00"},
)


def receivers_of(labels: dict[str, str], config: NotifyConfig = SKETCH) -> list[tuple[str, ...]]:
    return [m.receivers for m in route(labels, config)]


def test_first_matching_route_wins() -> None:
    assert receivers_of({"severity": "critical", "host": "xs-a1"}) == [("oncall", "sysadmin")]
    assert receivers_of({"severity": "warning"}) == [("sysadmin",)]


def test_continue_falls_through_to_the_next_match() -> None:
    got = receivers_of({"severity": "critical", "kind": "raid"})
    assert got == [("storage",), ("oncall", "sysadmin")]


def test_without_continue_the_search_stops() -> None:
    config = cfg({"match": {"severity": "critical"}, "receivers": ["oncall"]},
                 {"match": {"host": "xs-a1"}, "receivers": ["storage"]})
    assert receivers_of({"severity": "critical", "host": "xs-a1"}, config) == [("oncall",)]
    assert receivers_of({"severity": "warning", "host": "xs-a1"}, config) == [("storage",)]


def test_nothing_matched_means_log_only() -> None:
    assert route({"severity": "info", "host": "xs-a1"}, SKETCH) == []
    assert route({}, SKETCH) == []


def test_default_receivers_take_what_no_route_took() -> None:
    config = cfg({"match": {"severity": "critical"}, "receivers": ["oncall"]},
                 default_receivers=["sysadmin"])
    [m] = route({"severity": "info"}, config)
    assert (m.route_id, m.receivers) == ("default", ("sysadmin",))
    assert receivers_of({"severity": "critical"}, config) == [("oncall",)]


def test_matchers_equality_lists_and_missing_labels() -> None:
    assert matches({}, {"a": "1"})
    assert matches({"a": ["1", "2"]}, {"a": "2"})
    assert not matches({"a": ["1", "2"]}, {"a": "3"})
    assert not matches({"a": "1"}, {})
    assert matches({"a": ""}, {})  # a missing label is the empty string
    assert not matches({"a": "1", "b": "2"}, {"a": "1", "b": "3"})


def test_settings_inherit_defaults_and_routes_override_them() -> None:
    [crit] = route({"severity": "critical"}, SKETCH)
    assert crit.repeat_interval == 1800.0
    assert (crit.group_wait, crit.group_interval, crit.group_by) == (30.0, 300.0, ("host",))
    assert (crit.escalate_after, crit.escalate_to) == (900.0, ("directors",))
    assert crit.escalates
    assert crit.quiet_hours is None
    [warn] = route({"severity": "warning"}, SKETCH)
    assert warn.repeat_interval == 4 * 3600.0
    assert not warn.escalates
    assert str(warn.quiet_hours) == "22:00-07:00"
    config = cfg({"match": {}, "receivers": ["oncall"], "group_by": ["pool", "kind"],
                  "group_wait": "5s", "group_interval": "1m", "repeat": "1m"})
    [m] = route({"severity": "info"}, config)
    assert (m.group_by, m.group_wait, m.group_interval, m.repeat_interval) == (
        ("pool", "kind"), 5.0, 60.0, 60.0)


def test_a_bare_list_of_routes_uses_the_default_timings() -> None:
    [m] = route({"severity": "critical"}, [Route(match={"severity": "critical"},
                                                 receivers=["x"])])
    assert (m.receivers, m.repeat_interval) == (("x",), 4 * 3600.0)


def test_route_ids_are_stable_and_names_win() -> None:
    a = Route(match={"severity": "critical"}, receivers=["oncall"])
    b = Route(match={"severity": "critical"}, receivers=["oncall"], repeat=60)
    assert route_id(a) == route_id(b)  # timings do not change which group an alert is in
    assert route_id(a) != route_id(Route(match={"severity": "warning"}, receivers=["oncall"]))
    assert route_id(Route(name="pager", receivers=["oncall"])) == "pager"


# --- quiet hours ---------------------------------------------------------------------------

def at(hhmm: str, day: int = 24) -> float:
    h, m = map(int, hhmm.split(":"))
    return datetime(2026, 11, day, h, m, tzinfo=UTC).timestamp()


def test_quiet_hours_over_midnight() -> None:
    q = QuietHours.model_validate("22:00-07:00 UTC")
    inside = [q.contains(at(t)) for t in ("22:00", "03:00", "06:59", "07:00", "12:00", "21:59")]
    assert inside == [True, True, True, False, False, False]
    assert q.release(at("23:30")) == at("07:00", day=25)
    assert q.release(at("03:00")) == at("07:00")
    assert q.release(at("12:00")) == at("12:00")


def test_quiet_hours_within_a_day_and_in_another_zone() -> None:
    q = QuietHours.model_validate("12:00-13:30 Europe/Paris")  # UTC+1 in November
    assert [q.contains(at(t)) for t in ("10:59", "11:15", "12:45")] == [False, True, False]
    assert q.release(at("11:00")) == at("12:30")
    assert str(q) == "12:00-13:30 Europe/Paris"


@pytest.mark.parametrize(("text", "words"), [
    ("22-07", "must look like 22:00-07:00"),
    ("22:00 to 07:00", "must look like"),
    ("25:00-07:00", "hour must be in 0..23"),
    ("22:00-07:61", "minute must be in 0..59"),
    ("08:00-08:00", "must differ"),
    ("22:00-07:00 Mars/Olympus", "unknown time zone"),
])
def test_bad_quiet_hours_are_clear_errors(text: str, words: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load({"receivers": RECEIVERS, "routes": [
            {"match": {"severity": "warning"}, "receivers": ["sysadmin"], "quiet_hours": text}]})
    assert words in str(exc.value)
    assert "routes.0.quiet_hours" in str(exc.value)


# --- validation at load --------------------------------------------------------------------

def load(data: dict[str, Any]) -> NotifyConfig:
    """Through the YAML loader's validation, as ``poolwarden.yaml`` will be."""
    import yaml

    text = yaml.safe_dump(data, sort_keys=False)
    parsed, lines = parse_yaml(text, "poolwarden.yaml")
    return validate(NotifyConfig, parsed, lines, "poolwarden.yaml")


@pytest.mark.parametrize(("data", "words"), [
    ({"routes": [{"match": {"severity": "critical"}, "receivers": ["oncal"]}]},
     "unknown receiver 'oncal' (known: directors, oncall, storage, sysadmin)"),
    ({"routes": [{"match": {"severity": "critical"}, "receivers": []}]},
     "at least 1 item"),
    ({"routes": [{"match": {"severity": "critical"}}]}, "Field required"),
    ({"routes": [{"receivers": ["oncall"], "escalate_after": "15m", "escalate_to": "boss"}]},
     "escalate_to: unknown receiver 'boss'"),
    ({"routes": [{"receivers": ["oncall"], "escalate_after": "15m"}]},
     "escalate_after needs escalate_to"),
    ({"routes": [{"receivers": ["oncall"], "escalate_to": "directors"}]},
     "escalate_to needs escalate_after"),
    ({"routes": [{"receivers": ["oncall"], "repeat": "1m"}]},
     "repeat must not be shorter than group_interval"),
    ({"routes": [{"receivers": ["oncall"], "match": {"severity": []}}]},
     "give at least one value"),
    ({"routes": [{"receivers": ["oncall"], "contine": True}]}, "Extra inputs"),
    ({"default_receivers": ["nobody"]}, "default_receivers: unknown receiver 'nobody'"),
    ({"escalate_after": "10m"}, "escalate_after and escalate_to go together"),
    ({"group_wait": "soon"}, "not a duration"),
])
def test_bad_notify_sections_are_clear_errors(data: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load({"receivers": RECEIVERS, **data})
    assert words in str(exc.value)
    assert str(exc.value).startswith("poolwarden.yaml:")


def test_receiver_errors_never_quote_the_url() -> None:
    with pytest.raises(ConfigError) as exc:
        load({"receivers": {"oncall": ["user:hunter2@smtp.example.com"]}})
    assert "not an apprise URL" in str(exc.value)
    assert "hunter2" not in str(exc.value)
    with pytest.raises(ConfigError, match="has no URL"):
        load({"receivers": {"oncall": []}})


def test_defaults_log_everything_only() -> None:
    config = NotifyConfig()
    assert (config.group_by, config.group_wait, config.group_interval,
            config.repeat_interval) == (["host"], 30.0, 300.0, 14400.0)
    assert route({"severity": "critical"}, config) == []


def test_the_design_sketch_loads() -> None:
    config = load({
        "receivers": {
            "oncall": ["mailto://u:p@example.com", "slack://a/b/c",
                       "twilio://s:t@+15551234567/+15557654321"],
            "sysadmin": ["mailto://u:p@example.com"],
            "directors": ["mailto://d@example.com"]},
        "routes": [
            {"match": {"severity": "critical"}, "receivers": ["oncall", "sysadmin"],
             "repeat": "30m", "escalate_after": "15m", "escalate_to": "directors"},
            {"match": {"severity": "warning"}, "receivers": ["sysadmin"],
             "quiet_hours": "22:00-07:00"}],
    })
    assert config.routes[0].escalate_to == ["directors"]
    assert config.routes[1].quiet_hours is not None
