"""The remediation engine against the REAL lab: what it does with each problem (the
site is in engine_site.py; limits, restarts and doubtful data in test_remediation_safety.py).

State changes come from the real state engine (fed by the real collector where a BMC is
involved), incidents from a real IncidentManager, messages are collected from ``send``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_site import (
    CPU,
    CPU_RULES,
    POOL,
    PSU,
    Site,
    layout,
    sensor,
    unchanged,
)

from poolwarden.errors import UsageError
from poolwarden.evaluate.state import CheckConfig, StateEngine
from poolwarden.incidents.manager import IncidentManager
from poolwarden.lab import Lab
from poolwarden.messages import State, StateChange
from poolwarden.store.db import Store
from poolwarden.store.journal import RemediationJournal
from poolwarden.store.lease import StoreLease


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab(layout()) as running:
        yield running


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path}/pw.db")
    yield s
    s.close()



# --- the scenario ------------------------------------------------------------------------

def test_cpu_overheat_on_the_master_hands_over_evacuates_and_reports(
        lab: Lab, store: Store) -> None:
    site = Site(lab, store, CPU_RULES)

    async def scenario() -> list[StateChange]:
        assert await site.poll_bmc("xs1") == []  # all OK: nothing to say
        lab.bmc["xs1"].set_sensor("temperature", "CPU1 Temp", 101.0)
        changes = await site.poll_bmc("xs1")
        await site.engine.drain()
        return changes

    changes = asyncio.run(scenario())
    assert [(c.check, c.new_state) for c in changes] == [(CPU, State.CRITICAL)]
    # the pool: master handed over, xs1 disabled and empty, every VM moved once
    snap = site.snapshot()
    assert lab.master_name in ("xs2", "xs3")
    xs1 = snap.host("xs1")
    assert xs1 is not None
    assert not xs1.enabled
    assert snap.layout()["xs1"] == []
    assert sorted(m.vm for m in lab.sim.migrations) == ["db-1", "web-1", "web-2"]
    # the report, to people
    [msg] = site.sent
    [rec] = RemediationJournal(store).recent(POOL)
    assert rec.status == "done"
    assert msg.key == f"remediation:{rec.id}"
    assert msg.severity == "critical"
    assert msg.labels["host"] == "xs1"
    assert msg.labels["rule"] == "cpu-hot"
    for text in ("CPU1 Temp = 101 °C", "critical ≥ 98", "is CRITICAL since",
                 f"Pool master: xs1 → {lab.master_name}", "designate", "migrate db-1",
                 "  xs1: (empty)", "VMs per host before:", "  xs1: db-1, web-1, web-2",
                 "xs1 is disabled and empty: check the cooling", "xe host-enable host=xs1"):
        assert text in msg.body, text
    # the incident's timeline tells the same story, step by step
    kinds = site.kinds("xs1")
    steps = [e for e in site.timeline("xs1") if e["kind"] == "remediation_step"]
    assert kinds == ["opened", "remediation_detected", "remediation_planned",
                     *["remediation_step"] * len(rec.steps), "remediation_done"]
    assert [s["data"]["name"] for s in steps] == [s.kind for s in rec.steps]
    assert all(s["data"]["status"] == "done" and s["data"]["started"] <= s["data"]["finished"]
               for s in steps)
    # the JSON report the demo prints
    [entry] = site.engine.history
    report = entry["report"]
    assert entry["status"] == "done"
    assert entry["remediation"] == rec.id
    assert report["master_before"] == "xs1"
    assert report["master_after"] == lab.master_name
    assert report["before"]["xs1"] == ["db-1", "web-1", "web-2"]
    assert report["after"]["xs1"] == []
    assert [s["name"] for s in report["steps"]][:2] == ["designate_master", "disable_host"]
    assert all(s["duration"] >= 0 for s in report["steps"])
    assert report["detected"]["reading"]["value"] == 101.0


def test_psu_notify_rule_touches_nothing_and_adds_no_second_message(
        lab: Lab, sqlite_store: Store) -> None:
    site = Site(lab, sqlite_store, CPU_RULES)

    async def scenario() -> None:
        changes = await site.feed([sensor("xs2", PSU, State.CRITICAL, None, "failed")])
        await site.engine.handle(changes)  # the same change again: a rule fires once
        await site.engine.drain()

    asyncio.run(scenario())
    # People hear of it through the problem's alert (severity from this rule, see
    # service.AlertBuilder); a message of its own would be a duplicate email.
    assert site.sent == []
    [entry] = site.engine.history
    assert (entry["action"], entry["status"]) == ("notify", "done")
    assert "warning alert" in entry["summary"]
    unchanged(site)
    assert RemediationJournal(sqlite_store).recent(POOL) == []
    assert site.kinds("xs2", PSU) == ["opened", "remediation_detected", "remediation_done"]


def test_two_problems_on_one_pool_run_one_after_the_other(
        lab: Lab, sqlite_store: Store) -> None:
    site = Site(lab, sqlite_store, CPU_RULES, max_hosts_down_per_pool=2)

    async def scenario() -> dict[str, list[str]]:
        await site.feed([sensor("xs1", CPU, State.CRITICAL), sensor("xs2", CPU, State.CRITICAL)])
        queued = site.engine.queued()
        await site.engine.drain()
        return queued

    queued = asyncio.run(scenario())
    assert [q.split()[0] for q in queued[POOL]] == ["xs1", "xs2"]  # FIFO, both kept
    first, second = sorted(RemediationJournal(sqlite_store).recent(POOL), key=lambda r: r.id)
    assert (first.host_name, first.status, second.host_name, second.status) == \
        ("xs1", "done", "xs2", "done")
    assert first.finished_at is not None
    assert first.finished_at <= second.created_at
    snap = site.snapshot()
    assert sorted(snap.layout()["xs3"]) == ["app", "cache", "db-1", "web-1", "web-2"]
    assert [m.key for m in site.sent] == [f"remediation:{first.id}", f"remediation:{second.id}"]
    detected = [e for e in site.timeline("xs2") if e["kind"] == "remediation_detected"]
    assert "queued behind 1" in detected[0]["message"]


def test_a_held_pool_lease_keeps_the_action_queued_until_it_is_free(
        lab: Lab, sqlite_store: Store) -> None:
    site = Site(lab, sqlite_store, CPU_RULES)
    other = StoreLease(sqlite_store, f"pool:{POOL}", holder="other-node/1/abc", ttl=60)
    other.acquire()

    async def scenario() -> dict[str, list[str]]:
        await site.feed([sensor("xs1", CPU, State.CRITICAL)])
        for _ in range(10):  # several retries, all refused by the lease
            await asyncio.sleep(0.06)
            await site.engine.tick()
        waiting = site.engine.queued()
        assert lab.sim.migrations == []
        other.release()
        await site.engine.drain()
        return waiting

    waiting = asyncio.run(scenario())
    assert waiting == {POOL: [f"xs1 {CPU} evacuate"]}
    assert lab.master_name != "xs1"
    kinds = site.kinds("xs1")
    assert kinds.count("remediation_waiting") == 1  # said once, not at every retry
    assert kinds[-1] == "remediation_done"


def test_unreachable_xapi_keeps_the_action_queued_and_tells_a_person_once(
        lab: Lab, sqlite_store: Store) -> None:
    site = Site(lab, sqlite_store, CPU_RULES)
    site.xapi_down = True

    async def scenario() -> None:
        await site.feed([sensor("xs1", CPU, State.CRITICAL)])
        for _ in range(5):
            await asyncio.sleep(0.06)
            await site.engine.tick()
        assert site.engine.queued() == {POOL: [f"xs1 {CPU} evacuate"]}
        site.xapi_down = False
        await site.engine.drain()

    asyncio.run(scenario())
    escalated, report = site.sent
    assert escalated.severity == "critical"
    assert "cannot reach XAPI" in escalated.body
    assert "keeps retrying" in escalated.body
    assert report.key.startswith("remediation:")
    assert lab.master_name != "xs1"
    assert site.kinds("xs1").count("remediation_waiting") == 1


def test_a_problem_over_before_its_turn_is_cancelled(lab: Lab, sqlite_store: Store) -> None:
    site = Site(lab, sqlite_store, CPU_RULES)
    other = StoreLease(sqlite_store, f"pool:{POOL}", holder="other-node/1/abc", ttl=60)
    other.acquire()

    async def scenario() -> None:
        await site.feed([sensor("xs1", CPU, State.CRITICAL)])
        while not site.engine.history and "remediation_waiting" not in site.kinds("xs1"):
            await asyncio.sleep(0.02)  # refused by the lease, queued
        await site.feed([sensor("xs1", CPU, State.OK, 60.0, "ok")])  # cooled down meanwhile
        other.release()
        await site.engine.drain()

    asyncio.run(scenario())
    unchanged(site)
    assert site.sent == []
    assert site.kinds("xs1")[-2:] == ["resolved", "remediation_cancelled"]
    assert site.engine.history[-1]["status"] == "cancelled"


def test_dry_run_changes_nothing_and_reports_what_it_would_do(
        lab: Lab, sqlite_store: Store) -> None:
    site = Site(lab, sqlite_store, CPU_RULES, dry_run=True)
    site.settle([sensor("xs1", CPU, State.CRITICAL)])
    unchanged(site)
    [msg] = site.sent
    [rec] = RemediationJournal(sqlite_store).recent(POOL)
    assert rec.status == "dry_run"
    assert msg.subject.startswith("[poolwarden] DRY RUN: would put xs1 into maintenance")
    assert "Would be done:" in msg.body
    assert "migrate db-1 from xs1" in msg.body
    assert "VMs per host after (planned):" in msg.body
    steps = [e for e in site.timeline("xs1") if e["kind"] == "remediation_step"]
    assert steps
    assert {s["data"]["status"] for s in steps} == {"planned"}
    assert site.engine.history[-1]["status"] == "dry_run"


def test_infeasible_plan_escalates_with_every_blocker(sqlite_store: Store) -> None:
    small = layout(hosts=[{"name": "xs1", "memory_gib": 64}, {"name": "xs2", "memory_gib": 16},
                          {"name": "xs3", "memory_gib": 16}],
                   vms=[{"name": f"big-{i}", "memory_gib": 12, "host": "xs1"} for i in range(3)])
    with Lab(small) as lab:
        site = Site(lab, sqlite_store, CPU_RULES)
        site.settle([sensor("xs1", CPU, State.CRITICAL)])
        [msg] = site.sent
        assert msg.severity == "critical"
        assert "cannot be evacuated" in msg.subject
        assert "Blockers (nothing was changed):" in msg.body
        assert "HOST_NOT_ENOUGH_FREE_MEMORY" in msg.body
        assert "big-" in msg.body
        assert lab.master_name == "xs1"
        assert lab.sim.migrations == []
        assert all(h.enabled for h in site.snapshot().hosts)
        assert site.kinds("xs1")[-2:] == ["remediation_planned", "remediation_escalated"]


def test_script_without_a_script_runner_escalates(lab: Lab, sqlite_store: Store) -> None:
    """No ``scripts:`` (refused at load with a script rule; here the engine alone): a
    person is asked. Scripts with a runner: tests/integration/test_script_action.py."""
    rules = [{"match": {"kind": "fan"}, "action": "script",
              "script": {"name": "reset-fan-controller", "args": ["--all"]}}]
    site = Site(lab, sqlite_store, rules)
    site.settle([sensor("xs3", "snmp/fan/Fan 1", State.CRITICAL, 0.0, "failed")])
    [msg] = site.sent
    assert msg.severity == "critical"
    assert "no scripts: section" in msg.body
    assert "run `reset-fan-controller --all` on xs3" in msg.body
    assert site.kinds("xs3", "snmp/fan/Fan 1")[-1] == "remediation_escalated"
    unchanged(site)


def test_record_event_adds_free_kinds_to_any_incident(store: Store) -> None:
    incidents = IncidentManager(store)
    engine = StateEngine(CheckConfig(max_attempts=1))
    [change] = engine.process(sensor("xs1", CPU, State.CRITICAL), time.time())
    opened = incidents.handle(change)
    assert opened is not None
    rec = incidents.record_event(opened.id, "remediation_step", "disable xs1: done",
                                 data={"name": "disable_host", "status": "done"})
    last = rec.events[-1]
    assert (last.kind, last.author, last.data["status"]) == \
        ("remediation_step", "poolwarden", "done")
    with pytest.raises(UsageError, match="lifecycle event"):
        incidents.record_event(opened.id, "resolved", "no")
    [ok] = engine.process(sensor("xs1", CPU, State.OK, 50.0, "ok"), time.time())
    incidents.handle(ok)
    done = incidents.record_event(opened.id, "remediation_done", "after the resolution")
    assert [e.kind for e in done.events][-2:] == ["resolved", "remediation_done"]
