"""Problems become alerts whose severity the rules decide, and resolve as the same alert."""

from __future__ import annotations

from typing import Any

from poolwarden.evaluate.rules import RuleConfig
from poolwarden.messages import Reading, State, StateChange, StateType
from poolwarden.service import AlertBuilder

RULES = [RuleConfig.model_validate(r) for r in (
    {"name": "hot", "action": "evacuate", "severity": "critical",
     "match": {"kind": "temperature", "state": "CRITICAL"}},
    {"name": "psu", "action": "notify", "severity": "warning",
     "match": {"kind": "power_supply", "state": ["WARNING", "CRITICAL"]}},
)]


class Index:
    """The one thing AlertBuilder asks the incident manager: the open incident's id."""

    def open_id(self, host: str, check: str) -> int | None:
        return 7


def change(check: str, kind: str, new: State, old: State = State.OK, ts: float = 100.0,
           hard: bool = True) -> StateChange:
    return StateChange("xs2", check, old, new, StateType.HARD if hard else StateType.SOFT,
                       3, 3, ts, f"{check} is {new.name}", hard,
                       reading=Reading(kind, check.rsplit("/", 1)[1], 1.0))


def build(*changes: StateChange, builder: AlertBuilder | None = None) -> Any:
    b = builder or AlertBuilder(RULES, {"xs2": "prod-a"})
    return b, b.build(changes, Index())  # type: ignore[arg-type]


def test_a_failed_psu_the_rules_call_warning_is_a_warning_alert() -> None:
    _, [alert] = build(change("snmp/power_supply/PS1 Status", "power_supply", State.CRITICAL))
    assert alert.firing
    assert alert.labels == {"severity": "warning", "host": "xs2", "pool": "prod-a",
                            "check": "snmp/power_supply/PS1 Status", "kind": "power_supply",
                            "state": "CRITICAL"}
    assert alert.incident_id == 7


def test_without_a_rule_the_state_decides() -> None:
    _, [crit, warn] = build(change("snmp/fan/Fan1A", "fan", State.CRITICAL),
                            change("plugin/ping", "plugin", State.WARNING))
    assert (crit.labels["severity"], warn.labels["severity"]) == ("critical", "warning")


def test_recovery_resolves_the_same_alert_and_soft_changes_are_ignored() -> None:
    check = "snmp/temperature/CPU1 Temp"
    b, [firing] = build(change(check, "temperature", State.CRITICAL, ts=100.0))
    _, soft = build(change(check, "temperature", State.WARNING, hard=False), builder=b)
    assert soft == []
    _, [resolved] = build(change(check, "temperature", State.OK, State.CRITICAL, ts=160.0),
                          builder=b)
    assert not resolved.firing
    assert resolved.key == firing.key
    assert resolved.labels == firing.labels
    assert resolved.starts_at == 100.0
    _, again = build(change(check, "temperature", State.OK, State.CRITICAL), builder=b)
    assert again == []  # nothing firing any more: no second resolved message


def test_an_acknowledged_incident_updates_its_firing_alert_once() -> None:
    check = "snmp/temperature/CPU1 Temp"
    b, [firing] = build(change(check, "temperature", State.CRITICAL))
    assert not firing.acknowledged
    [acked] = b.acknowledged({7}, now=200.0)  # incident 7 was acknowledged
    assert acked.acknowledged
    assert (acked.key, acked.starts_at, acked.ts) == (firing.key, firing.starts_at, 200.0)
    assert b.acknowledged({7}, now=205.0) == []  # nothing new to tell the notifier
    [unacked] = b.acknowledged(set(), now=210.0)  # a worse state cleared the ack
    assert not unacked.acknowledged
