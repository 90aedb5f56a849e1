"""The remediation engine's test site: the REAL lab (XenAPI over HTTP, snmpd BMC
agents), the real state engine and incident manager, messages collected from ``send``.
Used by test_remediation_engine.py (what it does) and test_remediation_safety.py
(what keeps it from doing harm)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import SecretStr

from poolwarden.collect.sensors import poll
from poolwarden.collect.snmp import SnmpTarget
from poolwarden.evaluate.rules import RuleConfig
from poolwarden.evaluate.state import CheckConfig, StateEngine
from poolwarden.hypervisor.base import PoolSnapshot
from poolwarden.hypervisor.xenapi import XenAPIDriver
from poolwarden.incidents.manager import IncidentManager
from poolwarden.lab import Lab, Layout
from poolwarden.messages import CheckResult, Message, Reading, State, StateChange
from poolwarden.remediate.engine import RemediationConfig, RemediationEngine
from poolwarden.remediate.executor import ExecutorSettings
from poolwarden.store.db import Store

FAST = ExecutorSettings(poll_interval=0.02, retry_delay=0.05)
CPU = "snmp/temperature/CPU1 Temp"
PSU = "snmp/power_supply/PS2 Status"
IPMI = "ipmi/temperature/CPU1"  # a check not folded under the BMC's snmp/agent
POOL = "lab-pool"
CPU_RULES = [
    {"name": "cpu-hot", "match": {"kind": "temperature", "state": "CRITICAL"},
     "action": "evacuate", "severity": "critical"},
    {"name": "psu", "match": {"kind": ["power_supply", "fan"], "state": "CRITICAL"},
     "action": "notify", "severity": "warning"},
]


def layout(**over: Any) -> Layout:
    doc: dict[str, Any] = {
        "pool": {"name": POOL, "master": "xs1"},
        "hosts": [
            {"name": "xs1", "memory_gib": 64,
             "bmc": {"profile": "dell-idrac", "recording": "dell-idrac-r640.snmprec"}},
            {"name": "xs2", "memory_gib": 64},
            {"name": "xs3", "memory_gib": 64},
        ],
        "vms": [
            {"name": "web-1", "memory_gib": 4, "host": "xs1"},
            {"name": "web-2", "memory_gib": 4, "host": "xs1"},
            {"name": "db-1", "memory_gib": 16, "host": "xs1"},
            {"name": "cache", "memory_gib": 8, "host": "xs2"},
            {"name": "app", "memory_gib": 8, "host": "xs3"},
        ],
        "credentials": {"user": "root", "password": "lab"},
        "migration": {"speed_gib_per_s": 128},
    }
    doc.update(over)
    return Layout.model_validate(doc)


class Site:
    """A lab, a store, the real state engine and incidents, and the engine under test."""

    def __init__(self, lab: Lab, store: Store, rules: Sequence[dict[str, Any]],
                 clock: Callable[[], float] = time.time, **config: Any) -> None:
        self.lab, self.store = lab, store
        self.sent: list[Message] = []
        self.xapi_down = False  # driver_for connects to a closed port (ConnectionFailed)
        self.states = StateEngine(CheckConfig(max_attempts=1))
        self.incidents = IncidentManager(store)
        config.setdefault("retry_after", 0.05)
        self.engine = RemediationEngine(
            RemediationConfig(**config), [RuleConfig.model_validate(r) for r in rules], store,
            driver_for=self.driver_for, incidents=self.incidents, send=self._send,
            clock=clock, pools={h.name: POOL for h in lab.layout.hosts}, settings=FAST)

    async def _send(self, message: Message) -> None:
        self.sent.append(message)

    def driver_for(self, pool: str) -> XenAPIDriver:
        assert pool == POOL
        url = "http://127.0.0.1:9" if self.xapi_down else self.lab.urls[self.lab.master_name]
        return XenAPIDriver(url, "root", "lab", timeout=2)

    def snapshot(self) -> PoolSnapshot:
        d = self.driver_for(POOL)
        try:
            return d.snapshot()
        finally:
            d.close()

    async def feed(self, results: Sequence[CheckResult]) -> list[StateChange]:
        """As the service does: state engine → incidents → remediation engine."""
        changes = [c for r in results for c in self.states.process(r, time.time())]
        await asyncio.to_thread(self.incidents.handle_many, changes)
        await self.engine.handle(changes)
        return changes

    def settle(self, results: Sequence[CheckResult]) -> list[StateChange]:
        """Feed and wait for the engine to finish, in ONE event loop (a second
        ``asyncio.run`` would cancel the first loop's workers mid-remediation)."""

        async def run() -> list[StateChange]:
            changes = await self.feed(results)
            await self.engine.drain()
            return changes

        return asyncio.run(run())

    async def poll_bmc(self, host: str) -> list[StateChange]:
        address, _, port = self.lab.bmc[host].address.rpartition(":")
        target = SnmpTarget(address=address, port=int(port), version="v2c",
                            community=SecretStr("public"), timeout=0.3, retries=0)
        return await self.feed(await poll(target, "dell-idrac", host=host))

    def timeline(self, host: str, check: str = CPU) -> list[dict[str, Any]]:
        found = [i for i in self.incidents.list(host=host) if i.check == check]
        assert found, f"no incident for {host} {check}"
        return [e.to_json() for e in self.incidents.get(found[0].id).events]

    def kinds(self, host: str, check: str = CPU) -> list[str]:
        return [e["kind"] for e in self.timeline(host, check)]


def sensor(host: str, check: str, state: State, value: float | None = 101.0,
           status: str = "criticalUpper") -> CheckResult:
    """A sensor result as the collector makes it (device thresholds, device status)."""
    kind, name = check.split("/")[1:]
    reading = Reading(kind, name, value, "°C" if kind == "temperature" else "",
                      crit=98.0 if kind == "temperature" else None, status=status)
    return CheckResult(host, check, state, f"{name} {value}", time.time(), reading=reading)



def unchanged(site: Site) -> None:
    """Nothing destructive happened: same master, every host enabled, nothing moved."""
    snap = site.snapshot()
    assert site.lab.master_name == "xs1"
    assert all(h.enabled and h.live for h in snap.hosts)
    assert site.lab.sim.migrations == []
    assert snap.layout()["xs1"] == ["db-1", "web-1", "web-2"]
