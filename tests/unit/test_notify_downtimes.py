"""Grouping with scheduled downtimes (``Grouper.muted``), over a fake clock: covered
alerts fire, repeat and escalate for nobody; the rest of their group is unaffected."""

from __future__ import annotations

from test_notify_grouping import ESC, GI, GW, NOON, REPEAT, alert, config, run

from poolwarden.messages import Alert
from poolwarden.notify.grouping import Grouper, Kind
from poolwarden.notify.render import render
from poolwarden.store.downtimes import DowntimeRecord, covering

HOUR = 3600.0


def grouper(*downtimes: DowntimeRecord) -> Grouper:
    def muted(a: Alert, t: float) -> bool:
        return covering(downtimes, a.labels["host"], a.labels["check"], t) is not None

    return Grouper(config(), muted=muted)


def downtime(host: str = "xs-a1", check: str = "", *, start: float = NOON - 60,
             end: float = NOON + 2 * HOUR) -> DowntimeRecord:
    return DowntimeRecord(1, host, check, start, end, "test", "", start)


def test_a_problem_in_a_downtime_notifies_when_it_ends_if_still_there() -> None:
    g = grouper(downtime(end=NOON + 2 * HOUR))
    g.submit([alert("disk", severity="critical")], NOON)
    assert run(g, NOON, NOON + 2 * HOUR - 1, step=10) == []  # no page, repeat, escalation
    [late] = run(g, NOON + 2 * HOUR, NOON + 2 * HOUR + GI)
    assert (late.kind, [a.key for a in late.firing]) == (Kind.FIRING, ["xs-a1|disk"])
    assert late.ts == NOON + 2 * HOUR
    # the first receivers get escalate_after to acknowledge, counted from the last tick
    # that saw the downtime (10 s before its end here)
    [esc] = run(g, NOON + 2 * HOUR + GI + 1, NOON + 2 * HOUR + ESC)
    assert esc.kind is Kind.ESCALATION
    assert esc.ts >= NOON + 2 * HOUR + ESC - 10


def test_a_problem_over_within_the_downtime_is_never_told() -> None:
    g = grouper(downtime())
    g.submit([alert("disk")], NOON)
    g.submit([alert("disk", firing=False, ts=NOON + 600)], NOON + 600)
    assert run(g, NOON, NOON + 3 * HOUR, step=30) == []


def test_only_the_covered_checks_are_held_back_and_the_message_says_so() -> None:
    g = grouper(downtime(check="snmp/temperature/*"))
    g.submit([alert("snmp/temperature/CPU1"), alert("snmp/fan/FAN1")], NOON)
    [out] = run(g, NOON, NOON + GW)
    assert [a.key for a in out.firing] == ["xs-a1|snmp/fan/FAN1"]
    assert out.muted == 1
    _, body = render(out, NOON + GW)
    assert "1 more alert(s) of this group firing in a scheduled downtime" in body
    assert "CPU1" not in body


def test_a_downtime_starting_mid_problem_stops_repeats_and_escalation_not_resolution() -> None:
    g = grouper(downtime(start=NOON + 60, end=NOON + 5 * HOUR))
    g.submit([alert("disk", severity="critical")], NOON)
    [first] = run(g, NOON, NOON + GW)
    assert first.kind is Kind.FIRING
    assert ESC < REPEAT < 4 * HOUR
    assert run(g, NOON + GW + 1, NOON + 4 * HOUR, step=30) == []  # held back
    g.submit([alert("disk", severity="critical", firing=False, ts=NOON + 4 * HOUR)],
             NOON + 4 * HOUR)
    [done] = run(g, NOON + 4 * HOUR, NOON + 4 * HOUR + GI)
    assert (done.kind, [a.key for a in done.resolved]) == (Kind.RESOLVED, ["xs-a1|disk"])


def test_another_hosts_problem_is_not_held_back() -> None:
    g = grouper(downtime(host="xs-a2"))
    g.submit([alert("disk")], NOON)
    assert [o.kind for o in run(g, NOON, NOON + GW)] == [Kind.FIRING]
