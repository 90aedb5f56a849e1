"""Grouping over a fake clock: batching, intervals, repeats, resolution, acks, escalation,
quiet hours — and the property that a group never notifies faster than group_interval."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from poolwarden.messages import Alert
from poolwarden.notify.config import NotifyConfig
from poolwarden.notify.grouping import Grouper, Kind, Outgoing

#: 2026-11-24 12:00 UTC: far from the 22:00-07:00 quiet hours unless a test moves there
NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC).timestamp()
GW, GI, REPEAT, ESC = 30.0, 300.0, 3600.0, 900.0


def config(**kw: object) -> NotifyConfig:
    return NotifyConfig.model_validate({
        "receivers": {"pager": ["json://pager.example/h"], "mail": ["mailto://ops@example.com"],
                      "boss": ["mailto://boss@example.com"]},
        "routes": [
            {"match": {"severity": "critical"}, "receivers": ["pager", "mail"], "repeat": REPEAT,
             "escalate_after": ESC, "escalate_to": "boss", "quiet_hours": "22:00-07:00 UTC"},
            {"match": {"severity": "warning"}, "receivers": ["mail"], "repeat": REPEAT,
             "quiet_hours": "22:00-07:00 UTC"},
        ],
        "group_wait": GW, "group_interval": GI, **kw,
    })


def alert(name: str, *, host: str = "xs-a1", severity: str = "warning", firing: bool = True,
          starts: float = NOON, ts: float | None = None, ack: bool = False) -> Alert:
    return Alert(key=f"{host}|{name}", summary=f"{name} failed", firing=firing, starts_at=starts,
                 ts=starts if ts is None else ts, acknowledged=ack,
                 labels={"severity": severity, "host": host, "pool": "prod-a", "check": name,
                         "kind": "temperature"})


def run(g: Grouper, start: float, end: float, step: float = 1.0) -> list[Outgoing]:
    """Call ``due`` every ``step`` seconds like the service, collecting what went out."""
    out: list[Outgoing] = []
    t = start
    while t <= end:
        out += g.due(t)
        t += step
    return out


def test_twenty_alerts_of_one_host_make_one_notification() -> None:
    g = Grouper(config())
    for i in range(20):  # a BMC going bad: 20 sensors within 10 s
        g.submit([alert(f"sensor{i}", starts=NOON + i / 2)], NOON + i / 2)
    g.submit([alert("fan", host="xs-a2")], NOON + 5)
    assert run(g, NOON, NOON + GW - 1) == []
    sent = run(g, NOON + GW, NOON + GW + 10)
    assert [(o.group_label, len(o.firing), o.kind) for o in sent] == [
        ("host=xs-a1", 20, Kind.FIRING), ("host=xs-a2", 1, Kind.FIRING)]
    assert sent[0].receivers == ("mail",)
    assert sent[0].ts == NOON + GW  # group_wait from the group's first alert
    assert run(g, NOON + GW + 11, NOON + 2 * GI) == []


def test_updates_wait_for_group_interval() -> None:
    g = Grouper(config())
    g.submit([alert("a")], NOON)
    [first] = g.due(NOON + GW)
    g.submit([alert("b", starts=NOON + 40)], NOON + 40)
    g.submit([alert("c", starts=NOON + 50)], NOON + 50)
    assert run(g, NOON + 41, NOON + GW + GI - 1) == []
    [update] = run(g, NOON + GW + GI, NOON + GW + GI + 5)
    assert update.kind is Kind.FIRING
    assert [a.key for a in update.firing] == ["xs-a1|a", "xs-a1|b", "xs-a1|c"]
    assert update.key != first.key


def test_repeat_interval_is_respected_exactly() -> None:
    g = Grouper(config())
    g.submit([alert("a")], NOON)
    sent = run(g, NOON, NOON + GW + 3 * REPEAT + 10)
    assert [(o.kind, o.ts - NOON) for o in sent] == [
        (Kind.FIRING, GW), (Kind.REPEAT, GW + REPEAT), (Kind.REPEAT, GW + 2 * REPEAT),
        (Kind.REPEAT, GW + 3 * REPEAT)]
    assert len({o.key for o in sent}) == 4  # each repeat is its own idempotency key


def test_an_update_restarts_the_repeat_clock() -> None:
    g = Grouper(config())
    g.submit([alert("a")], NOON)
    g.due(NOON + GW)
    g.submit([alert("b", starts=NOON + 1000)], NOON + 1000)
    sent = run(g, NOON + 1000, NOON + 1000 + REPEAT + GI)
    assert [(o.kind, o.ts - NOON) for o in sent] == [
        (Kind.FIRING, 1000), (Kind.REPEAT, 1000 + REPEAT)]


def test_resolved_notification_when_every_alert_resolved() -> None:
    g = Grouper(config())
    g.submit([alert("a"), alert("b")], NOON)
    g.due(NOON + GW)
    g.submit([alert("a", firing=False, ts=NOON + 100)], NOON + 100)
    [partial] = run(g, NOON + 100, NOON + GW + GI)
    assert partial.kind is Kind.FIRING
    assert ([a.key for a in partial.firing], [a.key for a in partial.resolved]) == (
        ["xs-a1|b"], ["xs-a1|a"])
    g.submit([alert("b", firing=False, ts=NOON + 400)], NOON + 400)
    [done] = run(g, NOON + 400, NOON + GW + 2 * GI)
    assert done.kind is Kind.RESOLVED
    assert [a.key for a in done.resolved] == ["xs-a1|b"]
    assert done.firing == ()
    assert len(g) == 0  # the group ended
    assert run(g, NOON + GW + 2 * GI, NOON + 3 * REPEAT, step=60) == []


def test_alerts_resolved_before_anyone_was_told_vanish() -> None:
    g = Grouper(config())
    g.submit([alert("a")], NOON)
    g.submit([alert("a", firing=False, ts=NOON + 10)], NOON + 10)
    assert run(g, NOON, NOON + 2 * REPEAT, step=10) == []
    assert len(g) == 0
    g.submit([alert("never-fired", firing=False)], NOON)  # unknown: ignored
    assert len(g) == 0


def test_acknowledged_alerts_stop_repeats() -> None:
    g = Grouper(config())
    g.submit([alert("a")], NOON)
    g.due(NOON + GW)
    g.submit([alert("a", ack=True)], NOON + 100)
    assert run(g, NOON + 100, NOON + 3 * REPEAT, step=10) == []
    g.submit([alert("a")], NOON + 3 * REPEAT)  # the acknowledgement expired
    [again] = g.due(NOON + 3 * REPEAT)
    assert again.kind is Kind.REPEAT


def test_one_unacknowledged_alert_keeps_the_group_repeating() -> None:
    g = Grouper(config())
    g.submit([alert("a"), alert("b")], NOON)
    g.due(NOON + GW)
    g.submit([alert("a", ack=True)], NOON + 60)
    [repeat] = run(g, NOON + 60, NOON + GW + REPEAT)
    assert repeat.kind is Kind.REPEAT
    assert [a.acknowledged for a in repeat.firing] == [True, False]


def test_escalation_after_escalate_after_unacknowledged() -> None:
    g = Grouper(config())
    g.submit([alert("psu", severity="critical")], NOON)
    sent = run(g, NOON, NOON + GW + 2 * REPEAT, step=5)
    assert [(o.kind, o.ts - NOON, o.receivers) for o in sent] == [
        (Kind.FIRING, GW, ("pager", "mail")), (Kind.ESCALATION, ESC, ("boss",)),
        (Kind.REPEAT, GW + REPEAT, ("pager", "mail")),
        (Kind.REPEAT, GW + 2 * REPEAT, ("pager", "mail"))]  # escalated once only


def test_no_escalation_after_ack_or_resolution() -> None:
    g = Grouper(config())
    g.submit([alert("psu", severity="critical"), alert("fan", severity="critical", host="b")],
             NOON)
    g.due(NOON + GW)
    g.submit([alert("psu", severity="critical", ack=True)], NOON + 600)
    g.submit([alert("fan", severity="critical", host="b", firing=False)], NOON + 700)
    sent = run(g, NOON + 600, NOON + 2 * ESC)
    assert [o.kind for o in sent] == [Kind.RESOLVED]


def test_alerts_escalate_together_when_they_age_together() -> None:
    g = Grouper(config())
    g.submit([alert(f"s{i}", severity="critical", starts=NOON + i) for i in range(5)], NOON + 5)
    sent = [o for o in run(g, NOON, NOON + ESC + GI) if o.kind is Kind.ESCALATION]
    assert [len(o.firing) for o in sent] == [1, 4]  # s0 at 900 s; s1..s4 not before +GI
    assert sent[1].ts - sent[0].ts == GI


def test_quiet_hours_hold_a_warning_and_let_a_critical_through() -> None:
    night = datetime(2026, 11, 24, 23, 0, tzinfo=UTC).timestamp()
    morning = datetime(2026, 11, 25, 7, 0, tzinfo=UTC).timestamp()
    g = Grouper(config())
    g.submit([alert("fan", host="xs-a1", severity="warning", starts=night)], night)
    g.submit([alert("psu", host="xs-a2", severity="critical", starts=night)], night)
    sent = run(g, night, morning + 60, step=30)
    assert [(o.group_label, o.severity, o.ts) for o in sent if o.kind is Kind.FIRING] == [
        ("host=xs-a2", "critical", night + GW), ("host=xs-a1", "warning", morning)]
    assert g.next_due(morning + 60) == morning + REPEAT  # the warning repeats from 07:00


def test_an_alert_flapping_back_waits_group_interval() -> None:
    g = Grouper(config())
    g.submit([alert("a")], NOON)
    g.due(NOON + GW)
    g.submit([alert("a", firing=False, ts=NOON + 40)], NOON + 40)
    [resolved] = run(g, NOON + 40, NOON + GW + GI)
    g.submit([alert("a", starts=NOON + GW + GI + 1)], NOON + GW + GI + 1)
    [back] = run(g, NOON + GW + GI + 1, NOON + GW + 3 * GI)
    assert back.ts - resolved.ts == GI  # not group_wait: the tombstone keeps the pace


def test_an_alert_changing_route_resolves_where_it_was() -> None:
    g = Grouper(config())
    g.submit([alert("temp", severity="warning")], NOON)
    [warned] = g.due(NOON + GW)
    assert warned.receivers == ("mail",)
    g.submit([alert("temp", severity="critical")], NOON + 100)  # it got worse
    sent = run(g, NOON + 100, NOON + GW + GI)
    assert sorted((o.kind, o.severity, o.receivers) for o in sent) == [
        (Kind.FIRING, "critical", ("pager", "mail")), (Kind.RESOLVED, "warning", ("mail",))]
    g.submit([alert("temp", severity="critical", firing=False)], NOON + 400)
    [done] = run(g, NOON + 400, NOON + 100 + GW + GI)
    assert (done.kind, done.severity) == (Kind.RESOLVED, "critical")
    assert len(g) == 0


def test_keys_come_from_data_so_two_masters_agree() -> None:
    a, b = Grouper(config()), Grouper(config())
    alerts = [alert("a"), alert("b", starts=NOON + 3)]
    a.submit(alerts, NOON + 3)
    b.submit(alerts, NOON + 4)  # the second master saw them a second later
    keys_a = [o.key for o in run(a, NOON, NOON + 2 * REPEAT + 60)]
    keys_b = [o.key for o in run(b, NOON, NOON + 2 * REPEAT + 60)]
    assert keys_a == keys_b
    assert len(keys_a) == 3


def test_next_due_tells_when_to_wake_up() -> None:
    g = Grouper(config())
    assert g.next_due(NOON) is None
    g.submit([alert("a")], NOON)
    assert g.next_due(NOON) == NOON + GW


# --- the no-storm property ----------------------------------------------------------------

HOSTS = ("h1", "h2")
NAMES = ("a", "b", "c")
step = st.tuples(
    st.floats(min_value=0, max_value=2 * GI, allow_nan=False),  # time to the next event
    st.sampled_from(("fire", "resolve", "ack", "unack", "severity")),
    st.sampled_from(HOSTS), st.sampled_from(NAMES),
    st.sampled_from(("warning", "critical")),
)


@settings(max_examples=150, deadline=None)
@given(start=st.floats(min_value=0, max_value=86400, allow_nan=False),
       steps=st.lists(step, min_size=1, max_size=40))
def test_a_group_never_notifies_faster_than_group_interval(
        start: float, steps: list[tuple[float, str, str, str, str]]) -> None:
    g = Grouper(config(repeat_interval=GI))
    now = NOON - 12 * 3600 + start  # anywhere in a day, quiet hours included
    live: dict[str, Alert] = {}
    sent: list[Outgoing] = []
    for dt, action, host, name, severity in steps:
        # the service ticks every second: probe every 7 s while time passes
        end = now + dt
        while now < end:
            sent += g.due(now)
            now = min(now + 7, end)
        key = f"{host}|{name}"
        old = live.get(key)
        if action == "fire" and (old is None or not old.firing):
            live[key] = alert(name, host=host, severity=severity, starts=now)
        elif action == "resolve" and old is not None and old.firing:
            live[key] = replace(old, firing=False, ts=now)
        elif action in ("ack", "unack") and old is not None and old.firing:
            live[key] = replace(old, acknowledged=action == "ack")
        elif action == "severity" and old is not None and old.firing:  # moves route
            live[key] = replace(old, labels={**old.labels, "severity": severity})
        else:
            continue
        g.submit([live[key]], now)
        sent += g.due(now)
    sent += run(g, now, now + 3 * GI, step=7)
    last: dict[str, Outgoing] = {}
    for o in sent:
        if (prev := last.get(o.stream)) is not None:
            assert o.ts - prev.ts >= GI, (o.kind, o.group, o.ts - prev.ts)
            assert o.key != prev.key  # the ledger's rule: the same key twice is a duplicate
        last[o.stream] = o
