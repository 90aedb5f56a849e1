"""The Monitor in-process: jobs built from the config, states counted, health reported."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from poolwarden.config.models import Config
from poolwarden.lab.bmc import BmcAgent
from poolwarden.messages import State
from poolwarden.service import Monitor
from poolwarden.store.db import Store
from poolwarden.store.downtimes import Downtimes


def config(agent: BmcAgent, db: Path, **monitoring: object) -> Config:
    host, port = agent.address.rsplit(":", 1)
    return Config.model_validate({
        "store": {"url": f"sqlite:///{db}"},
        "monitoring": {"snmp_interval": "300ms", "retry_interval": "100ms",
                       "max_attempts": 3, **monitoring},
        "pools": [{"name": "p", "hosts": [
            {"name": "xs1", "bmc": {"address": host, "port": int(port),
                                    "profile": "dell-idrac"}}]}],
        "checks": [{"name": "dummy", "command": ["check_dummy", "1", "meh"],
                    "interval": "300ms", "hosts": "xs1"}],
    })


async def run_for(monitor: Monitor, seconds: float) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    await monitor.run(stop)


def test_monitor_counts_states_and_reports_its_health(tmp_path: Path) -> None:
    agent = BmcAgent("dell-idrac-r640.snmprec", profile="dell-idrac", name="xs1").start()
    try:
        cfg = config(agent, tmp_path / "pw.db")
        store = Store.open(cfg.store.url)
        monitor = Monitor(cfg, store)
        asyncio.run(run_for(monitor, 1.5))
        states = monitor.states()
        # 32 iDRAC sensors + the agent check, all OK; the dummy plugin says WARNING.
        assert states[State.OK] == 33
        assert states[State.WARNING] == 1
        line = monitor.status_line()
        assert "OK 33" in line
        assert "WARNING 1" in line
        assert "lateness max" in line
        assert monitor.scheduler.stats.runs >= 8
        # WARNING after 3 attempts at the 100 ms retry interval: HARD, one incident.
        assert monitor.incidents.open_count() == 1
        assert monitor.stats.incidents_opened == 1
        store.close()
    finally:
        agent.stop()


def test_the_retention_job_prunes_downtimes_that_ended_long_ago(tmp_path: Path) -> None:
    cfg = Config.model_validate({
        "store": {"url": f"sqlite:///{tmp_path / 'pw.db'}"},
        "retention": {"notifications": "1s"},
        "pools": [{"name": "p", "hosts": [{"name": "xs1"}]}],
    })
    store = Store.open(cfg.store.url)
    try:
        dts = Downtimes(store)
        dts.schedule("xs1", ends_at=time.time() + 0.2)
        kept = dts.schedule("xs1", ends_at=time.time() + 3600)
        time.sleep(1.5)  # the first one ended more than retention.notifications ago
        asyncio.run(Monitor(cfg, store)._archive())
        assert [d.id for d in dts.recent()] == [kept.id]
    finally:
        store.close()
