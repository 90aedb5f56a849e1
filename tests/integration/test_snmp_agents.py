"""Every recording served by a real net-snmp snmpd and read by ``poll`` over UDP.

The agents start once for the module (about 50 ms each, in parallel). snmpd must be
installed: without it these tests fail, they never skip.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from poolwarden.collect import sensors as sensors_mod
from poolwarden.collect.sensors import AGENT_CHECK, PollJob, poll, poll_many
from poolwarden.collect.snmp import SnmpClient, SnmpTarget, fetch, gather_bounded
from poolwarden.errors import AuthenticationFailed, ConfigError, ConnectionFailed
from poolwarden.lab.bmc import BmcAgent, V3User
from poolwarden.messages import CheckResult, State

RECORDINGS = {
    "r640": "dell-idrac-r640.snmprec", "c6525": "dell-idrac-c6525.snmprec",
    "hpe": "hpe-ilo4.snmprec", "supermicro": "supermicro-x11.snmprec",
    "lenovo": "lenovo-xcc.snmprec", "linux": "linux-netsnmp.snmprec",
}
V3 = V3User("poolwarden", auth_key="auth-secret-1", priv_key="priv-secret-1")


@pytest.fixture(scope="module")
def agents() -> Iterator[dict[str, BmcAgent]]:
    started = {name: BmcAgent(rec, name=name, v3_users=[V3] if name == "r640" else [])
               for name, rec in RECORDINGS.items()}
    try:
        for agent in started.values():
            agent.launch()
        for agent in started.values():
            agent.wait_ready()
        yield started
    finally:
        for agent in started.values():
            agent.stop()


def by_check(results: list[CheckResult]) -> dict[str, CheckResult]:
    out = {r.check: r for r in results}
    assert len(out) == len(results), "check ids are unique per host"
    return out


def read(agent: BmcAgent, profile: str | None = None, **target: object) -> dict[str, CheckResult]:
    return by_check(asyncio.run(poll(agent.target(**target), profile, host=agent.name)))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_dell_r640_auto_detected_and_read(agents: dict[str, BmcAgent]) -> None:
    got = read(agents["r640"])
    agent = got[AGENT_CHECK]
    assert agent.state is State.OK
    assert agent.output.startswith("dell-idrac: 32 sensors")
    cpu1 = got["snmp/temperature/CPU1 Temp"]
    assert cpu1.reading is not None
    assert (cpu1.reading.value, cpu1.reading.unit, cpu1.reading.warn, cpu1.reading.crit) == (
        55.0, "°C", None, 98.0)
    assert cpu1.state is State.OK
    assert cpu1.host == "r640"
    fan = got["snmp/fan/System Board Fan7B"].reading
    assert fan is not None
    assert (fan.value, fan.unit, fan.crit_low) == (2880.0, "RPM", 480.0)
    ps2 = got["snmp/power_supply/PS2 Status"].reading
    assert ps2 is not None
    assert ps2.value == 204.0
    assert all(r.state is State.OK for r in got.values())


def test_dell_c6525_power_supplies_and_fans(agents: dict[str, BmcAgent]) -> None:
    got = read(agents["c6525"], "dell-idrac")
    ps1 = got["snmp/power_supply/PS1 Status"].reading
    assert ps1 is not None
    assert (ps1.value, ps1.status) == (228.0, "ok,presenceDetected")
    assert len([c for c in got if c.startswith("snmp/fan/")]) == 8
    inlet = got["snmp/temperature/Inlet Temp"].reading
    assert inlet is not None
    assert (inlet.value, inlet.warn, inlet.crit) == (17.0, 26.0, 27.0)


def test_hpe_temperatures_thresholds_and_power(agents: dict[str, BmcAgent]) -> None:
    got = read(agents["hpe"])
    assert got[AGENT_CHECK].output.startswith("hpe-ilo:")
    cpu = got["snmp/temperature/cpu 2"].reading
    assert cpu is not None
    assert (cpu.value, cpu.crit, cpu.status) == (40.0, 70.0, "ok")
    assert len([c for c in got if c.startswith("snmp/temperature/")]) == 28
    bay2 = got["snmp/power_supply/Bay 2"].reading
    assert bay2 is not None
    assert (bay2.value, bay2.unit) == (42.0, "W")


def test_supermicro_repeated_names_and_string_readings(agents: dict[str, BmcAgent]) -> None:
    got = read(agents["supermicro"])
    assert got[AGENT_CHECK].output.startswith("supermicro:")
    first, second = got["snmp/voltage/12V #23"].reading, got["snmp/voltage/12V #47"].reading
    assert first is not None
    assert second is not None
    assert (first.value, first.crit, first.crit_low) == (12.111, 13.331, 10.342)
    assert second.value == 12.366
    fan = got["snmp/fan/FAN7"].reading
    assert fan is not None
    assert (fan.value, fan.warn_low, fan.crit_low) == (8500.0, 700.0, 500.0)
    assert "snmp/fan/FAN3" not in got


def test_lenovo_na_thresholds(agents: dict[str, BmcAgent]) -> None:
    got = read(agents["lenovo"])
    cpu, ambient = got["snmp/temperature/CPU Temp"], got["snmp/temperature/Ambient Temp"]
    assert cpu.reading is not None
    assert ambient.reading is not None
    assert (cpu.reading.value, cpu.reading.crit, cpu.reading.warn) == (35.0, None, None)
    assert (ambient.reading.value, ambient.reading.warn, ambient.reading.crit) == (26.0, 43.0,
                                                                                   47.0)
    assert got["snmp/system/systemHealthStat"].state is State.OK


def test_linux_host_load_and_storage(agents: dict[str, BmcAgent]) -> None:
    got = read(agents["linux"])
    assert got[AGENT_CHECK].output.startswith("netsnmp-host:")
    assert got["snmp/load/CPU 196608"].reading.value == 3.0  # type: ignore[union-attr]
    sda2 = got["snmp/partition//dev/sda2"].reading
    assert sda2 is not None
    assert sda2.value == pytest.approx(450.205, abs=1e-3)
    # the agent serves the recording only, not this machine's own interfaces or disks
    assert not [c for c in got if c.startswith(("snmp/interface/", "snmp/disk/"))]


def test_v3_auth_priv(agents: dict[str, BmcAgent]) -> None:
    v3 = {"version": "v3", "community": None, "user": V3.name,
          "auth_key": SecretStr(V3.auth_key), "priv_key": SecretStr(V3.priv_key)}
    got = read(agents["r640"], "dell-idrac", **v3)
    assert got["snmp/temperature/CPU1 Temp"].reading.value == 55.0  # type: ignore[union-attr]
    wrong = {**v3, "priv_key": SecretStr("not-the-key")}
    with pytest.raises(ConnectionFailed):  # a wrong privacy key: the agent stays silent
        asyncio.run(fetch(agents["r640"].target(**wrong, timeout=0.3, retries=0),
                          walks=["1.3.6.1.2.1.1"]))
    bad_auth = {**v3, "auth_key": SecretStr("not-the-key")}
    with pytest.raises(AuthenticationFailed):
        asyncio.run(fetch(agents["r640"].target(**bad_auth), walks=["1.3.6.1.2.1.1"]))
    (only,) = asyncio.run(poll(agents["r640"].target(**bad_auth), host="r640"))
    assert (only.check, only.state, only.unreachable) == (AGENT_CHECK, State.UNKNOWN, True)


@pytest.mark.parametrize("why", ["nobody listens", "wrong community"])
def test_dead_agent_is_one_unknown_unreachable_result(
    agents: dict[str, BmcAgent], why: str,
) -> None:
    if why == "nobody listens":
        target = SnmpTarget(address="127.0.0.1", port=free_port(), community=SecretStr("x"),
                            timeout=0.2, retries=1)
    else:  # snmpd drops requests with an unknown community: a timeout, like a dead BMC
        target = agents["r640"].target(community=SecretStr("wrong"), timeout=0.2, retries=1)
    results = asyncio.run(poll(target, "dell-idrac", host="xs9"))
    assert len(results) == 1
    (only,) = results
    assert (only.host, only.check, only.state, only.unreachable) == (
        "xs9", AGENT_CHECK, State.UNKNOWN, True)
    assert only.reading is None
    assert "SNMP 127.0.0.1:" in only.output


def test_get_many_oids_in_one_request_and_walk(agents: dict[str, BmcAgent]) -> None:
    base = "1.3.6.1.4.1.674.10892.5.4.700.20.1."

    async def run() -> tuple[dict[str, object], dict[str, object], int]:
        async with SnmpClient(agents["r640"].target()) as client:
            got = await client.get([f"{base}6.1.{i}" for i in range(1, 5)] + [base + "99.9.9"])
            requests = client.requests
            walked = await client.walk(base.rstrip("."))
        return dict(got), dict(walked), requests

    got, walked, requests = asyncio.run(run())
    assert got == {f"{base}6.1.1": 550, f"{base}6.1.2": 500, f"{base}6.1.3": 250,
                   f"{base}6.1.4": 570}
    assert requests == 1  # four values, one PDU (the missing OID is simply absent)
    assert len(walked) == 24
    assert walked[f"{base}8.1.1"] == b"CPU1 Temp"


def test_poll_many_bounded_concurrency_with_a_dead_agent(
    agents: dict[str, BmcAgent], monkeypatch: pytest.MonkeyPatch,
) -> None:
    active = peak = 0

    async def counting_poll(*args: object, **kwargs: object) -> list[CheckResult]:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        try:
            await asyncio.sleep(0.01)  # keep each poll in flight a little
            return await poll(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            active -= 1

    monkeypatch.setattr(sensors_mod, "poll", counting_poll)
    jobs = [PollJob(f"h{i}-{name}", agent.target()) for i in range(3)
            for name, agent in agents.items()]
    dead = SnmpTarget(address="127.0.0.1", port=free_port(), community=SecretStr("public"),
                      timeout=0.2, retries=0)
    jobs.append(PollJob("dead", dead, "dell-idrac"))
    results = asyncio.run(poll_many(jobs, limit=4))
    assert peak == 4
    assert list(results) == [job.host for job in jobs]
    assert [r.check for r in results["dead"]] == [AGENT_CHECK]
    assert results["dead"][0].unreachable
    for name in agents:
        agent_check = results[f"h2-{name}"][-1]
        assert (agent_check.check, agent_check.state) == (AGENT_CHECK, State.OK)
    assert results["h1-r640"][0].check == "snmp/temperature/CPU1 Temp"


def test_gather_bounded_keeps_order_and_limit() -> None:
    active = peak = 0

    async def job(i: int) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.001 * (10 - i))
        active -= 1
        return i

    out = asyncio.run(gather_bounded([lambda i=i: job(i) for i in range(10)], limit=3))
    assert (out, peak) == (list(range(10)), 3)


def test_values_override_cannot_serve_are_skipped_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counter64 = "1.3.6.1.2.1.31.1.1.1.6.1"  # ifHCInOctets: tag 70 in the recording
    with caplog.at_level("INFO", logger="poolwarden.lab.bmc"), \
            BmcAgent("dell-idrac-r640.snmprec", name="skips") as agent:
        assert counter64 in agent.skipped
        assert len(agent.skipped) == 124
        got = asyncio.run(fetch(agent.target(), gets=[counter64, "1.3.6.1.2.1.1.2.0"]))
    assert got.values == {"1.3.6.1.2.1.1.2.0": "1.3.6.1.4.1.674.10892.5"}
    (line,) = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert "124 recorded values override cannot serve, skipped (tag 64: 2, tag 70: 122)" in line
    assert counter64 in line
    assert not agent.running


def test_v3_user_keys_are_checked() -> None:
    with pytest.raises(ConfigError, match="8 characters"):
        V3User("u", auth_key="short", priv_key="long-enough")
    with pytest.raises(ConfigError, match="no spaces"):
        V3User("u", auth_key="has space in", priv_key="long-enough")
