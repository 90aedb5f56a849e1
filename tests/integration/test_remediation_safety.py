"""The remediation engine's safety against the REAL lab: limits per hour and on hosts
down, a restart in the middle of a remediation, unknown or unreachable BMCs, and
``sustained`` (the site is in engine_site.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_site import (
    CPU,
    CPU_RULES,
    FAST,
    IPMI,
    POOL,
    Site,
    layout,
    sensor,
    unchanged,
)

from poolwarden.hypervisor.xenapi import XenAPIDriver
from poolwarden.lab import Lab
from poolwarden.messages import State
from poolwarden.remediate.maintenance import host_maintenance
from poolwarden.remediate.planner import plan_maintenance
from poolwarden.store.db import Store
from poolwarden.store.journal import RemediationJournal


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab(layout()) as running:
        yield running


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path}/pw.db")
    yield s
    s.close()



def test_actions_per_hour_limit_escalates_and_does_nothing(
        lab: Lab, sqlite_store: Store) -> None:
    site = Site(lab, sqlite_store, CPU_RULES, max_actions_per_pool_per_hour=1,
                max_hosts_down_per_pool=3)

    async def scenario() -> None:
        await site.feed([sensor("xs2", CPU, State.CRITICAL)])
        await site.engine.drain()
        await site.feed([sensor("xs1", CPU, State.CRITICAL)])
        await site.engine.drain()

    asyncio.run(scenario())
    report, escalation = site.sent
    assert report.key.startswith("remediation:")
    assert escalation.severity == "critical"
    assert "max_actions_per_pool_per_hour=1 reached" in escalation.body
    assert "What would have been done:" in escalation.body
    assert "designate" in escalation.body
    assert "migrate db-1" in escalation.body
    assert lab.master_name == "xs1"
    snap = site.snapshot()
    assert snap.layout()["xs1"] == ["db-1", "web-1", "web-2"]
    assert site.kinds("xs1")[-1] == "remediation_escalated"
    assert len(RemediationJournal(sqlite_store).recent(POOL)) == 1


def test_hosts_down_limit_counts_hosts_poolwarden_put_in_maintenance(
        lab: Lab, sqlite_store: Store) -> None:
    site = Site(lab, sqlite_store, CPU_RULES)  # max_hosts_down_per_pool=1
    d = site.driver_for(POOL)
    try:
        assert host_maintenance(d, sqlite_store, "xs2", settings=FAST).ok
    finally:
        d.close()
    moved = len(lab.sim.migrations)

    site.settle([sensor("xs1", CPU, State.CRITICAL)])
    [msg] = site.sent
    assert "max_hosts_down_per_pool=1 reached" in msg.body
    assert "xs2 (#1)" in msg.body
    assert lab.master_name == "xs1"
    assert len(lab.sim.migrations) == moved
    assert site.kinds("xs1")[-1] == "remediation_escalated"


def test_a_restart_finishes_the_interrupted_remediation_and_then_skips_it(
        lab: Lab, sqlite_store: Store) -> None:
    # A process planned xs1's maintenance (journaled) and died before the first step.
    d = XenAPIDriver(lab.urls["xs1"], "root", "lab")
    try:
        xs1 = d.snapshot().host("xs1")
        assert xs1 is not None
        plan = plan_maintenance(d.snapshot(evacuating=xs1.ref), xs1.ref)
        RemediationJournal(sqlite_store).create(plan, dry_run=False)
    finally:
        d.close()
    # The restarted service sees the problem again: it resumes (no new action, so the
    # hourly limit does not stop it) instead of escalating or starting a second plan.
    site = Site(lab, sqlite_store, CPU_RULES, max_actions_per_pool_per_hour=1)
    site.settle([sensor("xs1", CPU, State.CRITICAL)])
    [rec] = RemediationJournal(sqlite_store).recent(POOL)
    assert rec.status == "done"
    assert [m.key for m in site.sent] == [f"remediation:{rec.id}"]
    assert sorted(m.vm for m in lab.sim.migrations) == ["db-1", "web-1", "web-2"]
    # and once more (a second restart): already in maintenance, nothing to redo
    again = Site(lab, sqlite_store, CPU_RULES)
    again.settle([sensor("xs1", CPU, State.CRITICAL)])
    # the skip re-submits the same report key: the notifier's ledger drops it when it was
    # sent, and delivers it when the process that did the work died before sending it
    assert [m.key for m in again.sent] == [f"remediation:{rec.id}"]
    assert again.engine.history[-1]["status"] == "skipped"
    assert len(lab.sim.migrations) == 3


def test_unknown_and_an_unreachable_bmc_never_lead_to_action(
        lab: Lab, sqlite_store: Store) -> None:
    rules = [{"match": {"kind": "temperature"}, "action": "evacuate"},  # any state
             {"match": {"check": "snmp/agent"}, "action": "shutdown"}]
    site = Site(lab, sqlite_store, rules)

    async def scenario() -> None:
        await site.poll_bmc("xs1")
        await site.feed([sensor("xs1", "snmp/temperature/Inlet Temp", State.UNKNOWN, None)])
        lab.bmc["xs1"].stop()  # the BMC dies
        changes = await site.poll_bmc("xs1")
        assert [(c.check, c.new_state) for c in changes] == [("snmp/agent", State.UNKNOWN)]
        # another source's CRITICAL while the BMC does not answer: not confirmed, no action
        # (an snmp/ result would itself mean that the agent answers again)
        await site.feed([sensor("xs1", IPMI, State.CRITICAL)])
        await site.engine.drain()

    asyncio.run(scenario())
    unchanged(site)
    assert site.sent == []
    assert RemediationJournal(sqlite_store).recent(POOL) == []
    for check in ("snmp/temperature/Inlet Temp", "snmp/agent", IPMI):
        assert site.kinds("xs1", check)[-1] == "remediation_refused", check


def test_a_problem_refused_while_the_bmc_was_away_fires_once_it_answers(
        lab: Lab, sqlite_store: Store) -> None:
    offset = [0.0]
    rules = [{"match": {"kind": "temperature", "state": "CRITICAL", "sustained": "30s"},
              "action": "evacuate"}]
    site = Site(lab, sqlite_store, rules, clock=lambda: time.time() + offset[0])
    bmc = lab.bmc["xs1"]

    async def scenario() -> None:
        await site.poll_bmc("xs1")
        bmc.set_sensor("temperature", "CPU1 Temp", 101.0)
        await site.poll_bmc("xs1")  # CRITICAL, pending for 30 s
        bmc.stop()
        await site.poll_bmc("xs1")  # the agent is gone
        offset[0] = 31.0
        await site.engine.drain()  # due, but not confirmed: refused
        assert lab.sim.migrations == []
        assert site.sent == []
        bmc.start()
        bmc.set_sensor("temperature", "CPU1 Temp", 101.0)
        changes = await site.poll_bmc("xs1")  # the agent answers; CPU1 still CRITICAL
        assert [(c.check, c.new_state) for c in changes] == [("snmp/agent", State.OK)]
        await site.engine.drain()

    asyncio.run(scenario())
    assert lab.master_name != "xs1"
    kinds = site.kinds("xs1")
    assert kinds.index("remediation_refused") < kinds.index("remediation_detected")
    assert kinds[-1] == "remediation_done"


def test_sustained_waits_for_tick_and_a_recovery_cancels(lab: Lab, sqlite_store: Store) -> None:
    offset = [0.0]
    rules = [{"match": {"kind": "temperature", "state": "CRITICAL", "sustained": "30s"},
              "action": "evacuate"}]
    site = Site(lab, sqlite_store, rules, clock=lambda: time.time() + offset[0])

    async def scenario() -> None:
        await site.feed([sensor("xs2", CPU, State.CRITICAL)])
        await site.feed([sensor("xs2", CPU, State.OK, 60.0, "ok")])  # cooled down in time
        await site.feed([sensor("xs1", CPU, State.CRITICAL)])
        await site.engine.tick()
        assert not site.engine.busy
        assert site.sent == []
        offset[0] = 31.0
        await site.engine.drain()

    asyncio.run(scenario())
    assert [r.host_name for r in RemediationJournal(sqlite_store).recent(POOL)] == ["xs1"]
    assert lab.master_name != "xs1"
    assert len(site.sent) == 1


