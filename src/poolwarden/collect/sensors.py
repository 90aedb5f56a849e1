"""Poll BMCs: one host's agent → CheckResults (:func:`poll`), a site's worth at once
(:func:`poll_many`, bounded concurrency).

Every sensor becomes one check ``snmp/<kind>/<name>`` carrying its :class:`Reading`
(value, the device's own thresholds and status) and the derived state. The agent itself
is the check ``snmp/agent``: OK with a summary when it answered, and the *only* result
(UNKNOWN, ``unreachable=True``) when it did not — a dead BMC is one problem, not forty
UNKNOWN sensors and never a CRITICAL.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial

from poolwarden.collect.profile import (
    Profile,
    Sensor,
    available_profiles,
    detect_profile,
    evaluate,
    load_profile,
)
from poolwarden.collect.snmp import (
    SYS_OBJECT_ID,
    SnmpClient,
    SnmpTarget,
    SnmpValue,
    gather_bounded,
)
from poolwarden.errors import AuthenticationFailed, TransientError
from poolwarden.messages import CheckResult, PerfData, Reading, State

AGENT_CHECK = "snmp/agent"
#: Nagios UOMs a graphing backend understands; other units stay in the Reading.
_PERF_UOMS = {"%", "s", "ms", "B", "KB", "MB", "GB", "TB", "c"}


@dataclass(frozen=True, slots=True)
class PollJob:
    """One host's BMC: where it listens, and its profile (None or ``auto``: detect)."""

    host: str
    target: SnmpTarget
    profile: Profile | str | None = None


async def poll(
    target: SnmpTarget, profile: Profile | str | None = None, *, host: str | None = None,
) -> list[CheckResult]:
    """Read every sensor of one agent; never raises for agent trouble (see module doc).

    A profile name that does not exist is the caller's mistake: ConfigError, raised.
    """
    host = host or target.endpoint
    ts, start = time.time(), time.monotonic()
    given = load_profile(profile) if isinstance(profile, str) and profile != "auto" else profile
    try:
        async with SnmpClient(target) as client:
            chosen = given if isinstance(given, Profile) else await _detect(client)
            if chosen is None:
                return [_agent(host, ts, start, State.UNKNOWN,
                               f"no SNMP profile matches {target.endpoint}: "
                               f"give one ({', '.join(available_profiles())})")]
            values: dict[str, SnmpValue] = {}
            for prefix in chosen.walk_oids:
                values.update(await client.walk(prefix))
            requests = client.requests
    except (TransientError, AuthenticationFailed) as exc:  # timeouts, refusals, garbage
        return [_agent(host, ts, start, State.UNKNOWN, str(exc), unreachable=True)]
    sensors = evaluate(chosen, values)
    results = [sensor_result(host, s, ts) for s in sensors]
    summary = (f"{chosen.name}: {len(sensors)} sensors from {len(values)} values in "
               f"{requests} requests")
    if not sensors:
        return [_agent(host, ts, start, State.UNKNOWN,
                       f"{summary}: nothing matched (wrong profile?)")]
    perf = (PerfData("values", len(values)), PerfData("requests", requests))
    return [*results, _agent(host, ts, start, State.OK, summary, perf)]


async def _detect(client: SnmpClient) -> Profile | None:
    """The profile the agent's sysObjectID and vendor probes point to (one GET)."""
    candidates = [load_profile(name) for name in available_profiles()]
    probes = [oid for p in candidates for oid in p.detect.probe]
    answer = await client.get([SYS_OBJECT_ID, *probes])
    sys_oid = answer.get(SYS_OBJECT_ID)
    return detect_profile(str(sys_oid) if sys_oid else None, answer, candidates)


async def poll_many(
    jobs: Iterable[PollJob], *, limit: int = 32,
) -> dict[str, list[CheckResult]]:
    """Poll many hosts concurrently, at most ``limit`` agents at a time; host → results."""
    jobs = list(jobs)
    results = await gather_bounded(
        [partial(poll, job.target, job.profile, host=job.host) for job in jobs], limit)
    return {job.host: res for job, res in zip(jobs, results, strict=True)}


def sensor_result(host: str, sensor: Sensor, ts: float) -> CheckResult:
    r = sensor.reading
    return CheckResult(
        host=host, check=sensor.check, state=sensor.state, output=describe(r), ts=ts,
        perfdata=_perf(r), reading=r,
    )


def _agent(host: str, ts: float, start: float, state: State, output: str,
           perf: Sequence[PerfData] = (), *, unreachable: bool = False) -> CheckResult:
    return CheckResult(
        host=host, check=AGENT_CHECK, state=state, output=output, ts=ts,
        duration=time.monotonic() - start, perfdata=tuple(perf), unreachable=unreachable,
    )


def fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"


def limits_text(r: Reading) -> str:
    """``warn ≥ 43 crit ≥ 47 warn ≤ 3 crit ≤ -7``, only the thresholds that exist."""
    parts = [f"{role} {sign} {fmt(v)}" for role, sign, v in (
        ("warn", "≥", r.warn), ("crit", "≥", r.crit), ("warn", "≤", r.warn_low),
        ("crit", "≤", r.crit_low)) if v is not None]
    return " ".join(parts)


def describe(r: Reading) -> str:
    """One line for the operator: reading, device thresholds, device verdict."""
    text = r.name if r.value is None else f"{r.name} {fmt(r.value)}{_sep(r.unit)}{r.unit}"
    if limits := limits_text(r):
        text += f" ({limits})"
    if r.status:
        text += f", device says {r.status}"
    return text


def _sep(unit: str) -> str:
    return "" if unit in ("", "%") else " "


def _range(low: float | None, high: float | None) -> str | None:
    """Nagios range text alerting outside [low, high]."""
    if low is None and high is None:
        return None
    if low is None:
        return f"~:{fmt(high)}"
    return f"{fmt(low)}:" if high is None else f"{fmt(low)}:{fmt(high)}"


def _perf(r: Reading) -> tuple[PerfData, ...]:
    if r.value is None:
        return ()
    return (PerfData(
        label=r.name, value=r.value, uom=r.unit if r.unit in _PERF_UOMS else "",
        warn=_range(r.warn_low, r.warn), crit=_range(r.crit_low, r.crit),
    ),)
