"""Rules: config validation with clear errors, and the pure matcher."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from poolwarden.evaluate.rules import (
    Action,
    MatchContext,
    RuleConfig,
    duplicate_rule_names,
    match,
    problem_kind,
)
from poolwarden.messages import Reading, State, StateChange, StateType

CPU = "snmp/temperature/CPU1 Temp"
PSU = "snmp/power_supply/PS2 Status"
T0 = 1_700_000_000.0


def change(check: str = CPU, state: State = State.CRITICAL, *, host: str = "xs1",
           hard: bool = True, ts: float = T0, status: str = "criticalUpper",
           kind: str | None = None, labels: dict[str, str] | None = None) -> StateChange:
    reading = None
    if check.startswith("snmp/") and check != "snmp/agent":
        reading = Reading(kind or check.split("/")[1], check.split("/")[2], 101.0, "°C",
                          warn=None, crit=98.0, status=status)
    return StateChange(host, check, State.OK, state,
                       StateType.HARD if hard else StateType.SOFT, 1, 1, ts, "out",
                       hard_change=hard, reading=reading, labels=labels or {})


def rule(**kw: Any) -> RuleConfig:
    kw.setdefault("action", "evacuate")
    return RuleConfig.model_validate(kw)


def ctx(pool: str = "prod-a", **kw: Any) -> MatchContext:
    return MatchContext(pool=pool, **kw)


# --- validation -------------------------------------------------------------------------

@pytest.mark.parametrize(("doc", "message"), [
    ({"match": {"kind": "temperature", "state": "OK"}}, "OK is not a problem"),
    ({"match": {"kind": "temperature", "state": "BAD"}}, "unknown state 'BAD'"),
    ({"match": {"kind": "temprature"}}, "did you mean 'temperature'"),
    ({"match": {"kind": "Temp Sensor"}}, "lower-case word"),
    ({"match": {"kind": "temperature", "sustain": "30s"}}, "Extra inputs are not permitted"),
    ({"match": {"kind": "temperature", "sustained": "soon"}}, "not a duration"),
    ({"match": {"state": "CRITICAL"}}, "must say which problems it is for"),
    ({"match": {"kind": "temperature", "state": ["CRITICAL", "UNKNOWN"]}},
     "never fires on UNKNOWN"),
    ({"match": {"kind": "temperature"}, "action": "reboot"}, "Input should be 'notify'"),
    ({"match": {"kind": "fan"}, "action": "script"}, "action script needs script"),
    ({"match": {"kind": "fan"}, "action": "notify", "script": {"name": "x"}},
     "only used by action script"),
    ({"match": {"kind": "fan"}, "action": "shutdown", "shutdown": True},
     "shutdown: true goes with action evacuate"),
    ({"match": {"kind": "fan"}, "action": "script", "script": {"name": "../etc/x"}},
     "String should match pattern"),
    ({"match": {"kind": "fan"}, "action": "notify", "severity": "page"},
     "Input should be 'critical'"),
])
def test_invalid_rules_are_refused_with_a_clear_reason(doc: dict[str, Any], message: str) -> None:
    doc.setdefault("action", "evacuate")
    with pytest.raises(ValidationError, match=message):
        RuleConfig.model_validate(doc)


def test_valid_rule_normalises_its_criteria() -> None:
    r = rule(name="cpu-hot", match={"kind": "Temperature", "state": "critical",
                                    "sustained": "30s", "host": "xs-*"}, severity="critical")
    assert r.match.kind == ("temperature",)
    assert r.match.state == ("CRITICAL",)
    assert r.match.host == ("xs-*",)
    assert r.match.sustained == 30.0
    assert rule(match={"kind": "fan"}, action="notify").match.state is None
    # an unknown kind that is no typo is allowed: plugins may label their own kinds
    assert rule(match={"kind": "raid_controller"}, action="notify").match.kind == \
        ("raid_controller",)


def test_duplicate_rule_names() -> None:
    rules = [rule(name="a", match={"kind": "fan"}), rule(name="a", match={"kind": "fan"}),
             rule(match={"kind": "fan"})]
    assert duplicate_rule_names(rules) == ["a"]


# --- matching ---------------------------------------------------------------------------

def test_kind_check_state_host_and_pool_globs() -> None:
    r = rule(match={"kind": ["temperature", "fan"], "check": "snmp/*/CPU*",
                    "state": ["WARNING", "CRITICAL"], "host": ["xs*"], "pool": "prod-*"})
    assert [d.action for d in match([r], change(), ctx())] == [Action.EVACUATE]
    assert match([r], change(PSU), ctx()) == []  # kind
    assert match([r], change("snmp/temperature/Inlet Temp"), ctx()) == []  # check glob
    assert match([r], change(host="db1"), ctx()) == []  # host glob
    assert match([r], change(), ctx(pool="lab")) == []  # pool glob
    assert match([r], change(state=State.WARNING), ctx())[0].severity == "warning"


def test_device_status_is_a_case_insensitive_glob() -> None:
    r = rule(match={"kind": "temperature", "device_status": ["critical*", "nonRecoverable*"]})
    assert match([r], change(status="CriticalUpper"), ctx())
    assert match([r], change(status="ok"), ctx()) == []


def test_only_hard_problems_match() -> None:
    r = rule(match={"kind": "temperature"})
    assert match([r], change(hard=False), ctx()) == []
    assert match([r], change(state=State.OK), ctx()) == []


def test_sustained_sets_when_the_decision_is_due() -> None:
    r = rule(match={"kind": "temperature", "sustained": "30s"})
    d = match([r], change(ts=T0 + 50), ctx(since=T0))[0]
    assert d.due_at == T0 + 30
    assert d.ready(T0 + 30)
    assert not d.ready(T0 + 29.9)
    # without a context "since", the problem is HARD since the change itself
    assert match([r], change(ts=T0), ctx())[0].due_at == T0 + 30
    assert match([rule(match={"kind": "temperature"})], change(), ctx())[0].due_at == T0


def test_unknown_never_evacuates_even_when_a_rule_matches_it() -> None:
    r = rule(match={"kind": "temperature"}, action="shutdown")  # no state: any problem
    d = match([r], change(state=State.UNKNOWN), ctx())[0]
    assert d.action is Action.SHUTDOWN
    assert "UNKNOWN" in d.refused


def test_unreachable_agent_refuses_destructive_actions_but_not_notify() -> None:
    rules = [rule(match={"kind": "temperature"}, action="notify"),
             rule(match={"kind": "temperature"})]
    ds = match(rules, change(), ctx(agent_reachable=False))
    assert [(d.action, bool(d.refused)) for d in ds] == [(Action.NOTIFY, False),
                                                         (Action.EVACUATE, True)]
    assert "does not answer" in ds[1].refused
    # the agent's own problem is never a reason to act on the host
    agent = rule(match={"check": "snmp/agent"})
    d = match([agent], change("snmp/agent", State.UNKNOWN), ctx())[0]
    assert d.refused


def test_first_match_wins_per_action_kind() -> None:
    rules = [
        rule(name="psu-notify", match={"kind": "power_supply"}, action="notify",
             severity="warning"),
        rule(name="cpu-notify", match={"kind": "temperature"}, action="notify",
             severity="info"),
        rule(name="cpu-evacuate", match={"kind": "temperature", "state": "CRITICAL"}),
        rule(name="any-notify", match={"kind": ["temperature", "power_supply"]},
             action="notify", severity="critical"),
        rule(name="cpu-shutdown", match={"kind": "temperature"}, action="shutdown"),
    ]
    got = [(d.rule, d.action, d.severity) for d in match(rules, change(), ctx())]
    # evacuate and shutdown are one kind (a host is emptied once): only the first fires
    assert got == [("cpu-notify", Action.NOTIFY, "info"),
                   ("cpu-evacuate", Action.EVACUATE, "critical")]
    assert [d.rule for d in match(rules, change(PSU), ctx())] == ["psu-notify"]


def test_none_stops_the_reading() -> None:
    rules = [rule(match={"kind": "temperature", "host": "lab-*"}, action="none"),
             rule(match={"kind": "temperature"})]
    assert [d.action for d in match(rules, change(host="lab-1"), ctx())] == [Action.NONE]
    assert [d.action for d in match(rules, change(host="xs1"), ctx())] == [Action.EVACUATE]


def test_unnamed_rules_are_named_by_position_and_shutdown_is_carried() -> None:
    rules = [rule(match={"kind": "fan"}, action="notify"),
             rule(match={"kind": "temperature"}, shutdown=True)]
    d = match(rules, change(), ctx())[0]
    assert (d.rule, d.index, d.shutdown) == ("rules[1]", 1, True)


def test_problem_kind() -> None:
    assert problem_kind(change(CPU)) == "temperature"
    assert problem_kind(change("snmp/agent", State.UNKNOWN)) == "snmp"
    assert problem_kind(change("plugin/ssh")) == "plugin"
    assert problem_kind(change("plugin/ipmi", labels={"kind": "fan"})) == "fan"


def test_the_examples_in_docs_rules_md_are_valid() -> None:
    import re
    from pathlib import Path

    import yaml

    from poolwarden.remediate.engine import RemediationConfig

    text = (Path(__file__).parents[2] / "docs" / "rules.md").read_text(encoding="utf-8")
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    rules = [RuleConfig.model_validate(r) for b in blocks for r in b.get("rules", [])]
    assert [r.action for r in rules] == [Action.NONE, Action.EVACUATE, Action.NOTIFY]
    [remediation] = [RemediationConfig.model_validate(b["remediation"])
                     for b in blocks if "remediation" in b]
    assert remediation.max_hosts_down_per_pool == 1
    inlet = change("snmp/temperature/System Board Inlet Temp")
    assert [d.rule for d in match(rules, inlet, ctx())] == ["cpu-or-inlet-hot"]
    assert match(rules, change("snmp/temperature/CPU1 Temp", host="lab-2"), ctx())[0].action \
        is Action.NONE
