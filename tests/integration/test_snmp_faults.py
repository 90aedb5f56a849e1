"""Fault injection through SNMP SET on real snmpd agents, and the agents inside the Lab."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from poolwarden.collect.sensors import AGENT_CHECK, poll
from poolwarden.collect.snmp import get
from poolwarden.errors import NotFound, OperationRefused
from poolwarden.lab import Lab
from poolwarden.lab.bmc import BmcAgent, start_agents, stop_agents
from poolwarden.messages import CheckResult, State

CPU1_READING = "1.3.6.1.4.1.674.10892.5.4.700.20.1.6.1.1"


@pytest.fixture(scope="module")
def bmc() -> Iterator[dict[str, BmcAgent]]:
    """One agent per recording used here; tests put back what they change (reset)."""
    agents = start_agents({
        "r640": {"profile": "dell-idrac"},
        "c6525": {"profile": "dell-idrac", "recording": "dell-idrac-c6525.snmprec"},
        "supermicro": {"profile": "supermicro"},
        "lenovo": {"profile": "lenovo-xcc"},
        "overheat": {"profile": "dell-idrac",
                     "recording": "dell-idrac-r640-cpu-overheat.snmprec"},
        "redundancy": {"profile": "dell-idrac",
                       "recording": "dell-idrac-c6525-redundancy-lost.snmprec"},
    })
    yield agents
    stop_agents(agents.values())


@pytest.fixture
def agent(bmc: dict[str, BmcAgent], request: pytest.FixtureRequest) -> Iterator[BmcAgent]:
    chosen = bmc[request.param]
    yield chosen
    chosen.reset()


def state_of(agent: BmcAgent) -> dict[str, CheckResult]:
    results = asyncio.run(poll(agent.target(), agent.profile, host=agent.name))
    return {r.check: r for r in results}


@pytest.mark.parametrize("agent", ["r640"], indirect=True)
def test_cpu_temperature_over_critical_is_critical(agent: BmcAgent) -> None:
    agent.set_sensor("temperature", "CPU1 Temp", 95.0)
    assert asyncio.run(get(agent.target(), [CPU1_READING])) == {CPU1_READING: 950}  # raw
    cpu1 = state_of(agent)["snmp/temperature/CPU1 Temp"]
    assert (cpu1.reading.value, cpu1.state) == (95.0, State.OK)  # type: ignore[union-attr]
    agent.set_sensor("temperature", "cpu1 temp", 99.0)
    cpu1 = state_of(agent)["snmp/temperature/CPU1 Temp"]
    assert (cpu1.reading.value, cpu1.reading.crit, cpu1.state) == (  # type: ignore[union-attr]
        99.0, 98.0, State.CRITICAL)
    assert "CPU1 Temp 99 °C (crit ≥ 98" in cpu1.output
    agent.reset()
    assert state_of(agent)["snmp/temperature/CPU1 Temp"].state is State.OK


@pytest.mark.parametrize("agent", ["r640"], indirect=True)
def test_failed_fan_without_status_column_is_critical_by_threshold(agent: BmcAgent) -> None:
    assert agent.fail_fan("System Board Fan3A") == ["1.3.6.1.4.1.674.10892.5.4.700.12.1.6.1.3"]
    fan = state_of(agent)["snmp/fan/System Board Fan3A"]
    assert (fan.reading.value, fan.state) == (0.0, State.CRITICAL)  # type: ignore[union-attr]


@pytest.mark.parametrize("agent", ["r640"], indirect=True)
def test_r640_recording_cannot_fail_a_psu(agent: BmcAgent) -> None:
    with pytest.raises(OperationRefused, match="has none of the columns"):
        agent.fail_psu("PS1 Status")
    with pytest.raises(NotFound, match="no power_supply sensor 'PS9'"):
        agent.fail_psu("PS9")


@pytest.mark.parametrize("agent", ["c6525"], indirect=True)
def test_failed_psu_follows_the_device_status(agent: BmcAgent) -> None:
    agent.fail_psu("PS2 Status")
    got = state_of(agent)
    ps2 = got["snmp/power_supply/PS2 Status"]
    assert ps2.state is State.CRITICAL
    assert ps2.reading.status == "critical,presenceDetected,psFailureDetected"  # type: ignore[union-attr]
    assert got["snmp/power_supply/PS1 Status"].state is State.OK
    agent.inject("power_supply", "PS1 Status", "ac_lost")
    ps1 = state_of(agent)["snmp/power_supply/PS1 Status"]
    assert (ps1.reading.value, ps1.state) == (0.0, State.CRITICAL)  # type: ignore[union-attr]


@pytest.mark.parametrize("agent", ["supermicro"], indirect=True)
def test_supermicro_repeated_names_need_the_index(agent: BmcAgent) -> None:
    with pytest.raises(NotFound, match="ambiguous: PS1 Status #36, PS1 Status #63"):
        agent.fail_psu("PS1 Status")
    agent.fail_psu("PS1 Status #63")
    agent.set_sensor("temperature", "CPU Temp", 97.5)  # a "32.000" string: "97.500"
    got = state_of(agent)
    assert got["snmp/power_supply/PS1 Status #63"].state is State.CRITICAL
    assert got["snmp/power_supply/PS1 Status #36"].state is State.OK
    cpu = got["snmp/temperature/CPU Temp"]
    assert (cpu.reading.value, cpu.state) == (97.5, State.WARNING)  # type: ignore[union-attr]
    agent.fail_fan("FAN2")
    assert state_of(agent)["snmp/fan/FAN2"].state is State.CRITICAL


@pytest.mark.parametrize("agent", ["lenovo"], indirect=True)
def test_lenovo_fan_failure_and_health_degraded(agent: BmcAgent) -> None:
    agent.fail_fan("Fan 2 Tach")
    agent.inject("system", "systemHealthStat", "degrade")
    got = state_of(agent)
    fan = got["snmp/fan/Fan 2 Tach"]
    assert (fan.reading.value, fan.reading.status, fan.state) == (  # type: ignore[union-attr]
        0.0, "Critical", State.CRITICAL)
    assert got["snmp/system/systemHealthStat"].state is State.WARNING


def test_fault_recordings_served_as_faults(bmc: dict[str, BmcAgent]) -> None:
    hot = state_of(bmc["overheat"])
    assert hot["snmp/temperature/CPU1 Temp"].state is State.CRITICAL
    assert hot["snmp/system/drsGlobalSystemStatus"].state is State.CRITICAL
    lost = state_of(bmc["redundancy"])
    unit = lost["snmp/redundancy/System Board PS Redundancy"]
    assert (unit.state, unit.reading.status) == (State.CRITICAL, "lost,critical")  # type: ignore[union-attr]
    assert lost["snmp/power_supply/PS2 Status"].state is State.CRITICAL
    assert lost[AGENT_CHECK].state is State.OK


def test_set_refuses_what_the_agent_does_not_serve(bmc: dict[str, BmcAgent]) -> None:
    with pytest.raises(NotFound):
        bmc["r640"].set("1.3.6.1.4.1.674.10892.5.4.700.20.1.6.1.99", 1)
    with pytest.raises(OperationRefused, match="tag-65"):
        bmc["r640"].set("1.3.6.1.2.1.2.2.1.13.1", 1)  # a Counter32


BMC_LAYOUT: dict[str, Any] = {
    "pool": {"name": "snmp-pool", "master": "xs1"},
    "hosts": [
        {"name": "xs1", "memory_gib": 64, "bmc": {"profile": "dell-idrac"}},
        {"name": "xs2", "memory_gib": 64,
         "bmc": {"profile": "hpe-ilo", "recording": "hpe-ilo4.snmprec"}},
        {"name": "xs3", "memory_gib": 64},
    ],
}


def test_lab_runs_one_agent_per_bmc_host_and_stops_them(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab(BMC_LAYOUT)
    assert sorted(lab.bmc) == ["xs1", "xs2"]
    snmp = lab.summary()["snmp"]
    assert snmp == {name: f"127.0.0.1:{agent.port}" for name, agent in lab.bmc.items()}
    assert lab.bmc["xs1"].recording.name == "dell-idrac-r640.snmprec"  # profile default
    lab.bmc["xs1"].set_sensor("temperature", "CPU2 Temp", 100.0)
    got = {r.check: r for r in asyncio.run(poll(lab.bmc["xs1"].target(), host="xs1"))}
    assert got["snmp/temperature/CPU2 Temp"].state is State.CRITICAL
    hpe = asyncio.run(poll(lab.bmc["xs2"].target(), host="xs2"))
    assert hpe[-1].output.startswith("hpe-ilo:")
    pids = [agent._proc.pid for agent in lab.bmc.values()]  # type: ignore[union-attr]
    lab.stop()
    assert not any(agent.running for agent in lab.bmc.values())
    for pid in pids:  # reaped: no zombie left behind
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
