"""The state engine: check results → SOFT/HARD states, flapping, unreachable folding.

Pure (no I/O; the clock is the ``now`` argument), so a replay of results gives the same
changes, and fast: one dict lookup and a few attribute reads for the common "same state
again" result. Semantics follow Icinga 2 (MONITORING.md "States"):

- Every check starts OK/HARD. A non-OK result after OK is SOFT, attempt 1; each further
  non-OK result (any non-OK state) is the next attempt; at ``max_attempts`` it becomes HARD
  (``hard_change=True``: what opens an incident). ``max_attempts=1`` is HARD at once.
- OK is immediate and HARD. From a HARD problem it is a recovery (``hard_change=True``);
  from a SOFT problem it is a *soft recovery* (``hard_change=False``: no incident was
  opened; Icinga 2 does not notify it either).
- HARD non-OK → another non-OK state stays HARD and is a hard change.
- A :class:`StateChange` is emitted on every change of state or state type, never for a
  repeat. While SOFT non-OK the next check is due after ``retry_interval``
  (:meth:`StateEngine.next_interval`), otherwise after ``check_interval``.
- Flapping (Icinga 2's algorithm): the last 20 results each record "state differs from the
  previous result's state", weighted 0.8 (oldest) … 1.18 (newest); the flapping value is
  their weighted share in percent. Flapping starts when the value exceeds ``flapping_high``
  (30) and ends when it is no longer above ``flapping_low`` (25). It is computed in exact
  integer units of 0.02, so the thresholds are compared without rounding error.
  ``StateChange.flapping`` is the flapping status after the result, and
  ``StateChange.flapping_change`` is START/END on the change where it flips; an END that
  coincides with no state change is emitted as a change with ``old_state == new_state``
  and ``hard_change=False``, so notifiers can release held notifications.
- Unreachable folding: see :meth:`StateEngine.process`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from poolwarden.errors import ConfigError
from poolwarden.messages import CheckResult, FlappingChange, Reading, State, StateChange, StateType

__all__ = ["AGENT_CHECK", "FLAPPING_WINDOW", "AgentOf", "CheckConfig", "CheckStatus",
           "SavedCheck", "StateEngine", "snmp_agent"]

#: the host-level check that stands for a host's SNMP agent (the BMC) as a whole
AGENT_CHECK = "snmp/agent"
FLAPPING_WINDOW = 20

#: maps a check id to the id of the agent check it depends on (None: not folded)
AgentOf = Callable[[str], str | None]

_OK, _UNKNOWN = State.OK, State.UNKNOWN
_SOFT, _HARD = StateType.SOFT, StateType.HARD
_START, _END = FlappingChange.START, FlappingChange.END
_MASK = (1 << FLAPPING_WINDOW) - 1


def _weight_table(newest_units: int) -> tuple[int, ...]:
    """Sums of weights (units of 0.02) for every 10-bit slice of the change history."""
    return tuple(sum(newest_units - k for k in range(10) if bits >> k & 1)
                 for bits in range(1024))


# Bit 0 is the newest result (weight 1.18 = 59 units), bit 19 the oldest (0.8 = 40 units).
_FLAP_NEW, _FLAP_OLD = _weight_table(59), _weight_table(49)


def snmp_agent(check: str) -> str | None:
    """Default folding rule: every ``snmp/...`` check depends on the host's ``snmp/agent``."""
    return AGENT_CHECK if check.startswith("snmp/") else None


@dataclass(frozen=True, slots=True)
class CheckConfig:
    """How one check is judged and scheduled (Icinga's defaults)."""

    max_attempts: int = 3
    check_interval: float = 300.0
    retry_interval: float = 60.0
    flapping: bool = True  # enable flapping detection
    flapping_low: float = 25.0
    flapping_high: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError("must be at least 1", field="max_attempts")
        if self.check_interval <= 0 or self.retry_interval <= 0:
            raise ConfigError("intervals must be positive", field="check_interval")
        if not 0 <= self.flapping_low <= self.flapping_high <= 100:
            raise ConfigError("need 0 <= flapping_low <= flapping_high <= 100",
                              field="flapping_low")


@dataclass(frozen=True, slots=True)
class CheckStatus:
    """A read-only view of one check's current state, for APIs and tests."""

    host: str
    check: str
    state: State  # UNKNOWN while folded under an unreachable agent
    state_type: StateType
    attempt: int
    max_attempts: int
    flapping: bool
    flapping_value: float  # percent, 0 … 99
    unreachable: bool  # folded: its agent does not answer
    last_check: float
    last_change: float


@dataclass(frozen=True, slots=True)
class SavedCheck:
    """Everything the engine knows of one check, to hand it to another process (a master
    taking a partition over) with its attempts and flapping history intact."""

    host: str
    check: str
    state: State
    hard: bool
    attempt: int
    flap_bits: int
    flapping: bool
    unreach: int
    last_check: float
    last_change: float

    def essence(self) -> tuple[State, bool, int, int, bool, int]:
        """What must be persisted again when it changes (``last_check`` alone need not)."""
        return (self.state, self.hard, self.attempt, self.flap_bits, self.flapping,
                self.unreach)


@dataclass(slots=True, eq=False)
class _Agent:
    """Reachability of one host's agent; ``rec`` is the agent check's own record."""

    rec: _Check | None = None
    down: bool = False
    rounds: int = 0  # consecutive unreachable poll rounds in this outage


@dataclass(slots=True, eq=False)
class _Check:
    host: str
    check: str
    config: CheckConfig
    agent: _Agent | None
    state: State = _OK
    hard: bool = True
    attempt: int = 1
    flap_bits: int = 0  # bit k: the result k results ago changed state
    flapping: bool = False
    unreach: int = 0  # consecutive unreachable results of this check
    last_check: float = 0.0
    last_change: float = 0.0


class StateEngine:
    """Turns a stream of :class:`CheckResult` into :class:`StateChange` events."""

    __slots__ = ("_agent_of", "_agents", "_checks", "_config_for", "_folded", "default")

    def __init__(self, default: CheckConfig | None = None, *,
                 config_for: Callable[[str, str], CheckConfig | None] | None = None,
                 agent_of: AgentOf | None = snmp_agent) -> None:
        """``config_for(host, check)`` is asked once per new check (None: ``default``);
        ``agent_of`` names the agent check a check is folded under (None: no folding). An
        agent check must map to itself (``snmp_agent`` does)."""
        self.default = default or CheckConfig()
        self._config_for = config_for
        self._agent_of = agent_of
        self._checks: dict[tuple[str, str], _Check] = {}
        self._agents: dict[tuple[str, str], _Agent] = {}
        #: hosts whose satellites' zone does not answer: every check shows UNKNOWN
        self._folded: set[str] = set()

    def __len__(self) -> int:
        return len(self._checks)

    # -- records --------------------------------------------------------------------------

    def _config(self, host: str, check: str) -> CheckConfig:
        found = self._config_for(host, check) if self._config_for is not None else None
        return found or self.default

    def _agent(self, host: str, agent_check: str) -> _Agent:
        agent = self._agents.get((host, agent_check))
        if agent is None:
            agent = self._agents[host, agent_check] = _Agent()
            rec = _Check(host, agent_check, self._config(host, agent_check), agent)
            agent.rec = self._checks[host, agent_check] = rec
        return agent

    def _record(self, host: str, check: str) -> _Check:
        rec = self._checks.get((host, check))
        if rec is not None:
            return rec
        agent_check = self._agent_of(check) if self._agent_of is not None else None
        if agent_check is None:
            rec = self._checks[host, check] = _Check(host, check, self._config(host, check),
                                                     None)
            return rec
        agent = self._agent(host, agent_check)
        if agent_check == check:
            assert agent.rec is not None
            return agent.rec
        rec = self._checks[host, check] = _Check(host, check, self._config(host, check), agent)
        return rec

    def configure(self, host: str, check: str, config: CheckConfig) -> None:
        """Set one check's config (kept: state, attempts and flapping history)."""
        self._record(host, check).config = config

    # -- processing -----------------------------------------------------------------------

    def process(self, result: CheckResult, now: float) -> list[StateChange]:
        """Apply one result; return the changes it causes (usually none). ``now`` is the
        caller's clock: it stamps the changes and starts the next interval.

        Unreachable folding, for checks that ``agent_of`` maps to an agent check (by
        default every ``snmp/...`` check → ``snmp/agent`` of the same host):

        - A result with ``unreachable=True`` does not touch that check's published state,
          attempts or flapping history and emits nothing for it; :meth:`status` shows it
          UNKNOWN with ``unreachable=True``. Instead the host's agent check receives the
          result's state (UNKNOWN; OK is read as UNKNOWN) with the output "agent not
          answering (<check>: <output>)", once per poll round (a round is counted when
          some check of the host reaches a new number of consecutive unreachable
          results), so 20 sensors polled in one round are one attempt, and the agent goes
          SOFT → HARD after ``max_attempts`` rounds: exactly one problem per host.
        - The first reachable result of any folded check (the agent answered) recovers the
          agent check to OK, then is judged normally against the check's published state,
          i.e. the state from before the outage: a sensor that was OK and is OK emits
          nothing, one that was CRITICAL stays CRITICAL without a new problem.
        - A result for the agent check itself is its own verdict when reachable, and one
          more unreachable round (keeping its own output) when not.
        - Results with ``unreachable=True`` for unfolded checks are judged like any other
          (their state, normally UNKNOWN).
        """
        rec = self._checks.get((result.host, result.check))
        if rec is None:
            rec = self._record(result.host, result.check)
        agent = rec.agent
        if agent is not None:
            if result.unreachable:
                return self._unreachable(rec, agent, result, now)
            if agent.down or rec.unreach:
                return self._answering(rec, agent, result, now)
        state = result.state
        if state is rec.state and rec.hard and not rec.flap_bits:
            rec.last_check = now  # the common case: same state again, nothing to say
            return []
        return self._step(rec, state, now, result.output, result.reading)

    def _unreachable(self, rec: _Check, agent: _Agent, result: CheckResult,
                     now: float) -> list[StateChange]:
        rec.unreach += 1
        rec.last_check = now
        if rec.unreach <= agent.rounds:
            return []  # this round is already counted
        agent.rounds = rec.unreach
        agent.down = True
        assert agent.rec is not None
        state = _UNKNOWN if result.state is _OK else result.state
        output = result.output
        if rec is not agent.rec:
            detail = f"{result.check}: {output}" if output else result.check
            output = f"agent not answering ({detail})"
        return self._step(agent.rec, state, now, output, None)

    def _answering(self, rec: _Check, agent: _Agent, result: CheckResult,
                   now: float) -> list[StateChange]:
        rec.unreach = 0
        changes: list[StateChange] = []
        if agent.down:
            agent.down, agent.rounds = False, 0
            assert agent.rec is not None
            if rec is not agent.rec:
                changes = self._step(agent.rec, _OK, now,
                                     f"agent answering again ({result.check})", None)
        return changes + self._step(rec, result.state, now, result.output, result.reading)

    def _step(self, rec: _Check, state: State, now: float, output: str,
              reading: Reading | None) -> list[StateChange]:
        """The SOFT/HARD state machine and flapping update for one result."""
        cfg = rec.config
        old, was_hard = rec.state, rec.hard
        rec.last_check = now
        flap_change: FlappingChange | None = None
        if cfg.flapping:
            bits = rec.flap_bits = ((rec.flap_bits << 1) | (state is not old)) & _MASK
            units = _FLAP_NEW[bits & 1023] + _FLAP_OLD[bits >> 10]
            limit = cfg.flapping_low if rec.flapping else cfg.flapping_high
            flapping = units > limit * 10  # percent = units × 0.02 × 100 / 20
            if flapping is not rec.flapping:
                rec.flapping = flapping
                flap_change = _START if flapping else _END
        if state is _OK:
            hard, attempt, hard_change = True, 1, old is not _OK and was_hard
        elif old is _OK:
            hard = cfg.max_attempts <= 1
            attempt, hard_change = 1, hard
        elif was_hard:
            hard, attempt, hard_change = True, rec.attempt, state is not old
        else:
            attempt = rec.attempt + 1
            hard = attempt >= cfg.max_attempts
            hard_change = hard
            attempt = min(attempt, cfg.max_attempts)
        rec.state, rec.hard, rec.attempt = state, hard, attempt
        if state is not old or hard is not was_hard:
            rec.last_change = now
        elif flap_change is None:
            return []
        return [StateChange(
            rec.host, rec.check, old, state, _HARD if hard else _SOFT, attempt,
            cfg.max_attempts, now, output, hard_change, rec.flapping, reading,
            flapping_change=flap_change)]

    # -- queries --------------------------------------------------------------------------

    def next_interval(self, host: str, check: str) -> float:
        """Seconds until the check is due again: the retry interval while SOFT non-OK
        (for a folded unreachable check: while its agent is), else the check interval."""
        rec = self._checks.get((host, check))
        if rec is None:
            return self.default.check_interval
        judged = rec
        if rec.unreach and rec.agent is not None and rec.agent.down and rec.agent.rec:
            judged = rec.agent.rec
        if judged.state is not _OK and not judged.hard:
            return judged.config.retry_interval
        return rec.config.check_interval

    def next_check(self, host: str, check: str) -> float | None:
        """When the check is next due (its last result's ``now`` + :meth:`next_interval`)."""
        rec = self._checks.get((host, check))
        return None if rec is None else rec.last_check + self.next_interval(host, check)

    def status(self, host: str, check: str) -> CheckStatus | None:
        rec = self._checks.get((host, check))
        if rec is None:
            return None
        folded = host in self._folded or bool(
            rec.unreach and rec.agent is not None and rec.agent.down
            and rec.agent.rec is not rec)
        bits = rec.flap_bits
        return CheckStatus(
            host, check, State.UNKNOWN if folded else rec.state,
            _HARD if rec.hard else _SOFT, rec.attempt, rec.config.max_attempts,
            rec.flapping, (_FLAP_NEW[bits & 1023] + _FLAP_OLD[bits >> 10]) / 10,
            folded, rec.last_check, rec.last_change)

    # -- moving checks between processes (distributed mode) ------------------------------

    def saved(self, host: str, check: str) -> SavedCheck | None:
        rec = self._checks.get((host, check))
        if rec is None:
            return None
        return SavedCheck(rec.host, rec.check, rec.state, rec.hard, rec.attempt,
                          rec.flap_bits, rec.flapping, rec.unreach, rec.last_check,
                          rec.last_change)

    def keys(self, hosts: set[str] | None = None) -> list[tuple[str, str]]:
        """(host, check) of every record (of ``hosts`` only, if given)."""
        return [k for k in self._checks if hosts is None or k[0] in hosts]

    def restore(self, saved: Iterable[SavedCheck]) -> int:
        """Take records over from another process; an agent whose folded checks were
        unreachable is down again, so the outage goes on being one problem."""
        n = 0
        for sv in saved:
            rec = self._record(sv.host, sv.check)
            rec.state, rec.hard, rec.attempt = sv.state, sv.hard, sv.attempt
            rec.flap_bits, rec.flapping, rec.unreach = sv.flap_bits, sv.flapping, sv.unreach
            rec.last_check, rec.last_change = sv.last_check, sv.last_change
            if rec.unreach and rec.agent is not None:
                rec.agent.down = True
                rec.agent.rounds = max(rec.agent.rounds, rec.unreach)
            n += 1
        return n

    def forget(self, hosts: set[str]) -> int:
        """Drop every record of ``hosts`` (their partition moved to another master)."""
        gone = [k for k in self._checks if k[0] in hosts]
        for k in gone:
            del self._checks[k]
        for k in [k for k in self._agents if k[0] in hosts]:
            del self._agents[k]
        self._folded -= hosts
        return len(gone)

    def fold_hosts(self, hosts: Iterable[str], folded: bool) -> None:
        """Show every check of ``hosts`` as UNKNOWN/unreachable (their zone's satellites
        are gone) without a state change: the zone is the one problem, not each host."""
        if folded:
            self._folded.update(hosts)
        else:
            self._folded.difference_update(hosts)

    def folded_hosts(self) -> set[str]:
        return set(self._folded)

    def unreachable_hosts(self, agent_check: str = AGENT_CHECK) -> list[str]:
        """Hosts whose agent currently does not answer."""
        return sorted(h for (h, a), agent in self._agents.items()
                      if a == agent_check and agent.down)
