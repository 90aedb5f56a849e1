"""Discovery keeps the check set current: pool members the configuration does not list
get the matching plugin checks, addressed as XAPI reports them."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from poolwarden.config.models import Config
from poolwarden.lab import Lab
from poolwarden.messages import State
from poolwarden.service import Monitor
from poolwarden.store.db import Store


def test_pool_members_found_through_xapi_get_the_plugin_checks(lab: Lab, store: Store) -> None:
    cfg = Config.model_validate({
        "pools": [{"name": "lab-pool",
                   "xapi": {"url": lab.urls[lab.master_name], "user": "root",
                            "password": "lab"},
                   "hosts": [{"name": "xstest1", "address": "127.0.0.1"}]}],
        "checks": [{"name": "alive", "command": ["check_dummy", "0", "up {host.address}"],
                    "interval": "1h", "hosts": "xstest*"}],
    })
    monitor = Monitor(cfg, store)
    assert set(monitor.catalog) == {"plugin/alive/xstest1"}

    asyncio.run(monitor._refresh_pools())
    assert set(monitor.catalog) == {"plugin/alive/xstest1", "plugin/alive/xstest2",
                                    "plugin/alive/xstest3"}
    found = monitor.catalog["plugin/alive/xstest2"]
    snap = monitor.pools.get("lab-pool")
    assert snap is not None
    assert snap.snapshot is not None
    xapi_address = next(h.address for h in snap.snapshot.hosts if h.name == "xstest2")
    assert found.params["address"] == xapi_address
    # the discovered job runs like any other, with XAPI's address on its command line
    [result] = asyncio.run(monitor.runner.run(found))
    assert result.state is State.OK
    assert result.output == f"OK: up {xapi_address}"  # check_dummy prefixes its state
    # nothing new on the next round
    assert monitor.discover() == []

    # xstest3 leaves the pool: its job goes, and its checks leave the board
    monitor.evaluate([result])
    assert ("xstest2", "plugin/alive") in monitor.checks()
    assert snap.snapshot is not None
    monitor.pools.put("lab-pool", replace(snap.snapshot, hosts=tuple(
        h for h in snap.snapshot.hosts if h.name != "xstest2")))
    assert monitor.discover() == ["plugin/alive/xstest2"]
    assert ("xstest2", "plugin/alive") not in monitor.checks()
    assert monitor.engine.status("xstest2", "plugin/alive") is None
