"""SNMPv3 engine ids remembered between polls (``collect._v3``), against real net-snmp
agents: one round trip fewer per poll, and a replaced agent (a new engine id on the same
address) still read in the same poll."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from poolwarden.collect._v3 import ENGINES, EngineIds
from poolwarden.collect.snmp import SnmpTarget, fetch
from poolwarden.errors import ConnectionFailed
from poolwarden.lab.bmc import BmcAgent, V3User

V3 = V3User("poolwarden", auth_key="auth-secret-1", priv_key="priv-secret-1")
RECORDING = "dell-idrac-r640.snmprec"
SYS_NAME = "1.3.6.1.2.1.1.5.0"


def v3_target(agent: BmcAgent, **extra: object) -> SnmpTarget:
    return agent.target(version="v3", community=None, user=V3.name,
                        auth_key=SecretStr(V3.auth_key), priv_key=SecretStr(V3.priv_key),
                        **extra)


@pytest.fixture
def agent() -> Iterator[BmcAgent]:
    with BmcAgent(RECORDING, name="r640", v3_users=[V3]) as running:
        yield running


def test_the_second_poll_skips_engine_discovery(agent: BmcAgent) -> None:
    target = v3_target(agent)
    assert target.engine_key is not None
    ENGINES.forget(target.engine_key)
    first = asyncio.run(fetch(target, gets=[SYS_NAME]))
    engine = ENGINES.get(target.engine_key)
    assert engine  # learned from the agent
    second = asyncio.run(fetch(target, gets=[SYS_NAME]))
    assert first.values == second.values != {}
    assert (first.requests, second.requests) == (3, 2)  # discovery + boots/time + GET
    assert ENGINES.get(target.engine_key) == engine


def test_a_replaced_agent_is_read_in_the_same_poll(agent: BmcAgent) -> None:
    target = v3_target(agent, timeout=0.5, retries=1)
    assert target.engine_key is not None
    asyncio.run(fetch(target, gets=[SYS_NAME]))
    old = ENGINES.get(target.engine_key)
    port = agent.port
    agent.stop()
    with BmcAgent(RECORDING, name="r640-new", port=port, v3_users=[V3]):
        got = asyncio.run(fetch(target, gets=[SYS_NAME]))  # the stale id meets silence
        assert got.values
        new = ENGINES.get(target.engine_key)
        assert new is not None
        assert new != old


def test_a_dead_agent_is_forgotten(agent: BmcAgent) -> None:
    target = v3_target(agent, timeout=0.3, retries=0)
    assert target.engine_key is not None
    asyncio.run(fetch(target, gets=[SYS_NAME]))
    assert ENGINES.get(target.engine_key)
    agent.stop()
    with pytest.raises(ConnectionFailed):
        asyncio.run(fetch(target, gets=[SYS_NAME]))
    assert ENGINES.get(target.engine_key) is None


def test_v2c_targets_have_no_engine() -> None:
    assert SnmpTarget(address="192.0.2.1", community=SecretStr("public")).engine_key is None


def test_the_least_recently_used_engine_id_is_forgotten_first() -> None:
    ids = EngineIds(limit=2)
    a, b, c = (("192.0.2.1", 161, u) for u in "abc")
    ids.remember(a, b"\x80a")
    ids.remember(b, b"\x80b")
    assert ids.get(a) == b"\x80a"  # a is now the most recent
    ids.remember(c, b"\x80c")
    assert (ids.get(a), ids.get(b), ids.get(c)) == (b"\x80a", None, b"\x80c")
    ids.remember(a, b"")  # an agent that reported no engine id is not remembered
    assert ids.get(a) == b"\x80a"
    assert len(ids) == 2
