"""The state engine: SOFT/HARD, recovery, flapping, unreachable folding."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poolwarden.errors import ConfigError
from poolwarden.evaluate.state import AGENT_CHECK, CheckConfig, StateEngine
from poolwarden.messages import CheckResult, FlappingChange, State, StateChange, StateType

OK, WARNING, CRITICAL, UNKNOWN = State.OK, State.WARNING, State.CRITICAL, State.UNKNOWN
SOFT, HARD = StateType.SOFT, StateType.HARD
NO_FLAP = CheckConfig(flapping=False)


def result(state: State, check: str = "plugin/x", host: str = "xs1", *,
           unreachable: bool = False) -> CheckResult:
    return CheckResult(host, check, state, f"{state.name} output", 0.0,
                       unreachable=unreachable)


def feed(engine: StateEngine, states: Iterable[State], check: str = "plugin/x",
         start: float = 0.0) -> list[list[StateChange]]:
    return [engine.process(result(s, check), start + i * 60) for i, s in enumerate(states)]


def summary(changes: list[StateChange]) -> list[tuple[State, State, StateType, int, bool]]:
    return [(c.old_state, c.new_state, c.state_type, c.attempt, c.hard_change)
            for c in changes]


def test_soft_until_max_attempts_then_hard() -> None:
    engine = StateEngine(NO_FLAP)
    out = feed(engine, [OK, CRITICAL, CRITICAL, CRITICAL, CRITICAL])
    assert out[0] == []  # OK → OK: nothing
    assert summary(out[1]) == [(OK, CRITICAL, SOFT, 1, False)]
    assert out[2] == []  # SOFT 2/3: same state and type, nothing to say
    assert summary(out[3]) == [(CRITICAL, CRITICAL, HARD, 3, True)]
    assert out[4] == []
    status = engine.status("xs1", "plugin/x")
    assert status is not None
    assert (status.state, status.state_type, status.attempt) == (CRITICAL, HARD, 3)


def test_change_between_problems_while_soft_counts_attempts() -> None:
    engine = StateEngine(NO_FLAP)
    out = feed(engine, [WARNING, CRITICAL, UNKNOWN])
    assert summary(out[0]) == [(OK, WARNING, SOFT, 1, False)]
    assert summary(out[1]) == [(WARNING, CRITICAL, SOFT, 2, False)]
    assert summary(out[2]) == [(CRITICAL, UNKNOWN, HARD, 3, True)]


def test_recovery_is_immediate_and_hard() -> None:
    engine = StateEngine(NO_FLAP)
    out = feed(engine, [CRITICAL] * 3 + [OK, OK])
    assert summary(out[3]) == [(CRITICAL, OK, HARD, 1, True)]
    assert out[4] == []


def test_soft_recovery_opens_nothing_so_resolves_nothing() -> None:
    engine = StateEngine(NO_FLAP)
    out = feed(engine, [WARNING, OK])
    assert summary(out[1]) == [(WARNING, OK, HARD, 1, False)]


def test_hard_to_hard_state_change() -> None:
    engine = StateEngine(NO_FLAP)
    out = feed(engine, [WARNING] * 3 + [CRITICAL, CRITICAL, WARNING])
    assert summary(out[2]) == [(WARNING, WARNING, HARD, 3, True)]
    assert summary(out[3]) == [(WARNING, CRITICAL, HARD, 3, True)]
    assert out[4] == []
    assert summary(out[5]) == [(CRITICAL, WARNING, HARD, 3, True)]


def test_max_attempts_one_is_hard_at_once() -> None:
    engine = StateEngine(CheckConfig(max_attempts=1, flapping=False))
    out = feed(engine, [CRITICAL, OK])
    assert summary(out[0]) == [(OK, CRITICAL, HARD, 1, True)]
    assert summary(out[1]) == [(CRITICAL, OK, HARD, 1, True)]


def test_per_check_config_and_retry_interval() -> None:
    fast = CheckConfig(max_attempts=2, check_interval=30, retry_interval=5, flapping=False)
    engine = StateEngine(NO_FLAP, config_for=lambda h, c: fast if c == "plugin/fast" else None)
    assert engine.next_interval("xs1", "plugin/fast") == 300  # unknown yet: the default
    out = feed(engine, [CRITICAL, CRITICAL], check="plugin/fast")
    assert summary(out[1]) == [(CRITICAL, CRITICAL, HARD, 2, True)]
    feed(engine, [CRITICAL], check="plugin/slow")
    assert engine.next_interval("xs1", "plugin/slow") == 60  # SOFT: retry interval
    assert engine.next_check("xs1", "plugin/slow") == 60
    assert engine.next_interval("xs1", "plugin/fast") == 30  # HARD: check interval
    engine.configure("xs1", "plugin/slow", fast)
    assert summary(feed(engine, [CRITICAL], check="plugin/slow")[0]) == [
        (CRITICAL, CRITICAL, HARD, 2, True)]


@pytest.mark.parametrize("kwargs", [
    {"max_attempts": 0}, {"retry_interval": 0}, {"check_interval": -1},
    {"flapping_low": 40, "flapping_high": 30}, {"flapping_high": 101},
])
def test_bad_config(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        CheckConfig(**kwargs)  # type: ignore[arg-type]


def test_changes_carry_the_result() -> None:
    engine = StateEngine(NO_FLAP)
    (change,) = engine.process(result(CRITICAL), now=1234.5)
    assert (change.host, change.check, change.ts, change.output) == (
        "xs1", "plugin/x", 1234.5, "CRITICAL output")
    assert (change.max_attempts, change.flapping, change.flapping_change) == (3, False, None)


# -- flapping ------------------------------------------------------------------------------

def icinga_flapping(seq: list[State], low: float = 25, high: float = 30) -> list[bool]:
    """Icinga 2's UpdateFlappingStatus (a ring of 20 "state changed" bits, weights
    0.8 + 0.02 × age rank), with exact fractions instead of doubles."""
    ring, oldest, flapping, last, out = [False] * 20, 0, False, OK, []
    for state in seq:
        ring[oldest] = state != last
        oldest = (oldest + 1) % 20
        value = sum((Fraction(4, 5) + Fraction(2, 100) * i
                     for i in range(20) if ring[(oldest + i) % 20]), Fraction(0)) * 100 / 20
        flapping = value > (low if flapping else high)
        last = state
        out.append(flapping)
    return out


def test_flapping_starts_and_ends_on_a_crafted_sequence() -> None:
    engine = StateEngine()
    seq = [OK, CRITICAL] * 4 + [CRITICAL] * 20
    out = feed(engine, seq)
    signals = [(i, c.flapping_change) for i, changes in enumerate(out) for c in changes
               if c.flapping_change is not None]
    # changes weigh 1.18, 1.16, …: five recent changes are 28.5 % (not above 30 %),
    # six are 33.9 %: START with the 6th change (index 6; index 0 is OK after OK)
    # then without changes each one ages by 0.02 a result; at index 21 the six changes in
    # the window (indices 2..7) weigh 0.9 … 0.8 = 25.5 %, at 22 five weigh 21 %: END.
    assert signals == [(6, FlappingChange.START), (22, FlappingChange.END)]
    (start,) = out[6]
    assert start.flapping
    assert (start.old_state, start.new_state) == (CRITICAL, OK)
    (end,) = out[22]  # nothing else changed: a bare flapping END, old == new
    assert (end.old_state, end.new_state, end.state_type) == (CRITICAL, CRITICAL, HARD)
    assert not end.flapping
    assert not end.hard_change
    assert [c.flapping for changes in out[6:22] for c in changes] == [True] * 3
    status = engine.status("xs1", "plugin/x")
    assert status is not None
    assert status.flapping_value == 0.0
    assert icinga_flapping(seq).index(True) == 6
    assert icinga_flapping(seq)[21:23] == [True, False]


def test_flapping_disabled() -> None:
    engine = StateEngine(NO_FLAP)
    out = feed(engine, [OK, CRITICAL] * 20)
    assert not any(c.flapping or c.flapping_change for changes in out for c in changes)


states = st.sampled_from(list(State))


@given(states, st.integers(1, 60))
def test_a_constant_state_never_flaps(state: State, n: int) -> None:
    engine = StateEngine()
    for changes in feed(engine, [state] * n):
        assert all(not c.flapping and c.flapping_change is None for c in changes)


@given(st.tuples(states, states).filter(lambda t: t[0] != t[1]), st.integers(7, 60))
def test_alternating_always_flaps(pair: tuple[State, State], n: int) -> None:
    engine = StateEngine()
    feed(engine, [pair[i % 2] for i in range(n)])
    status = engine.status("xs1", "plugin/x")
    assert status is not None
    assert status.flapping
    assert status.flapping_value <= 99.0


@given(st.lists(states, max_size=80))
def test_flapping_signals_alternate_and_start_only_on_a_change(seq: list[State]) -> None:
    engine = StateEngine()
    flapping = False
    for changes in feed(engine, seq):
        for c in changes:
            if c.flapping_change is FlappingChange.START:
                assert not flapping
                assert c.old_state != c.new_state
                flapping = True
            elif c.flapping_change is FlappingChange.END:
                assert flapping
                flapping = False
            assert c.flapping is flapping
    status = engine.status("xs1", "plugin/x")
    assert status is None or status.flapping is flapping


@given(st.lists(states, max_size=80),
       st.sampled_from([(25.0, 30.0), (10.0, 20.0), (40.0, 50.0), (30.0, 30.0)]))
def test_flapping_matches_icinga(seq: list[State], thresholds: tuple[float, float]) -> None:
    low, high = thresholds
    engine = StateEngine(CheckConfig(flapping_low=low, flapping_high=high))
    expected = icinga_flapping(seq, low, high)
    for i, state in enumerate(seq):
        engine.process(result(state), i)
        status = engine.status("xs1", "plugin/x")
        assert status is not None
        assert status.flapping is expected[i], i


# -- unreachable folding --------------------------------------------------------------------

SENSORS = [f"snmp/temperature/Sensor {i}" for i in range(20)]


def poll_round(engine: StateEngine, now: float, *, unreachable: bool,
               state: State = OK, host: str = "xs1") -> list[StateChange]:
    changes: list[StateChange] = []
    for check in SENSORS:
        r = result(UNKNOWN if unreachable else state, check, host, unreachable=unreachable)
        changes += engine.process(r, now)
    return changes


def test_agent_down_is_exactly_one_problem() -> None:
    engine = StateEngine()
    assert poll_round(engine, 0, unreachable=False) == []
    outage: list[StateChange] = []
    for i in range(1, 8):
        outage += poll_round(engine, i * 60, unreachable=True)
    assert {c.check for c in outage} == {AGENT_CHECK}
    assert summary(outage) == [(OK, UNKNOWN, SOFT, 1, False),
                               (UNKNOWN, UNKNOWN, HARD, 3, True)]
    problems = [c for c in outage if c.hard_change and c.new_state is not OK]
    assert len(problems) == 1
    assert "agent not answering" in problems[0].output
    assert engine.unreachable_hosts() == ["xs1"]
    sensor = engine.status("xs1", SENSORS[3])
    assert sensor is not None
    assert sensor.unreachable
    assert sensor.state is UNKNOWN
    assert engine.next_interval("xs1", SENSORS[3]) == 300  # the agent is HARD down

    back = poll_round(engine, 600, unreachable=False)
    assert summary(back) == [(UNKNOWN, OK, HARD, 1, True)]
    assert back[0].check == AGENT_CHECK
    assert engine.unreachable_hosts() == []
    sensor = engine.status("xs1", SENSORS[3])
    assert sensor is not None
    assert not sensor.unreachable
    assert sensor.state is OK


def test_short_outage_is_soft_and_retried_fast() -> None:
    engine = StateEngine()
    changes = poll_round(engine, 0, unreachable=True)
    assert summary(changes) == [(OK, UNKNOWN, SOFT, 1, False)]
    assert engine.next_interval("xs1", SENSORS[0]) == 60
    assert summary(poll_round(engine, 60, unreachable=False)) == [
        (UNKNOWN, OK, HARD, 1, False)]


def test_problems_from_before_the_outage_stay_without_new_ones() -> None:
    engine = StateEngine()
    for i in range(3):
        poll_round(engine, i * 60, unreachable=False, state=CRITICAL)
    for i in range(3, 7):
        assert all(c.check == AGENT_CHECK for c in poll_round(engine, i * 60,
                                                              unreachable=True))
    back = poll_round(engine, 600, unreachable=False, state=CRITICAL)
    assert [c.check for c in back] == [AGENT_CHECK]  # sensors: still the same HARD problem
    status = engine.status("xs1", SENSORS[0])
    assert status is not None
    assert (status.state, status.state_type) == (CRITICAL, HARD)


def test_other_hosts_and_unfolded_checks_are_independent() -> None:
    engine = StateEngine()
    poll_round(engine, 0, unreachable=True, host="xs1")
    assert poll_round(engine, 0, unreachable=False, host="xs2") == []
    changes = engine.process(result(UNKNOWN, "plugin/ssh", unreachable=True), 0)
    assert summary(changes) == [(OK, UNKNOWN, SOFT, 1, False)]  # judged like any result


def test_agent_check_results_of_its_own() -> None:
    """What collect.sensors sends: only ``snmp/agent`` (UNKNOWN, unreachable) when the BMC
    does not answer, and its own verdict when it does."""
    engine = StateEngine()
    out = [engine.process(result(UNKNOWN, AGENT_CHECK, unreachable=True), i * 60)
           for i in range(3)]
    changes = [c for changes in out for c in changes]
    assert summary(changes) == [
        (OK, UNKNOWN, SOFT, 1, False), (UNKNOWN, UNKNOWN, HARD, 3, True)]
    assert changes[0].output == "UNKNOWN output"  # its own output, not rewritten
    assert engine.unreachable_hosts() == ["xs1"]
    (back,) = engine.process(result(WARNING, AGENT_CHECK), 200)
    assert (back.old_state, back.new_state, back.state_type) == (UNKNOWN, WARNING, HARD)
    assert engine.unreachable_hosts() == []


def test_folding_can_be_disabled() -> None:
    engine = StateEngine(agent_of=None)
    changes = poll_round(engine, 0, unreachable=True)
    assert len(changes) == len(SENSORS)
