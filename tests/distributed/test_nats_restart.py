"""Restart NATS under a running master and satellite: both reconnect, nothing stays stuck.

The server restarted is a private nats-server (the ``private_nats`` fixture: the same
Debian binary as the machine's, with JetStream and its own store directory on a free
port): restarting the machine's server would disturb everything else using it.
"""

from __future__ import annotations

import time

from dist_harness import Site, wait_until

from nats_server import PrivateNats


def test_everyone_reconnects_after_a_nats_restart(site: Site,
                                                  private_nats: PrivateNats) -> None:
    site.nats_url = private_nats.url
    site.write_config()
    site.master("mA")
    site.satellite("sat1")
    wait_until(lambda: site.query("SELECT count(DISTINCT host) FROM sample")[0][0] == 3,
               what="samples of every host")

    private_nats.stop()
    time.sleep(3)  # the processes notice, keep running, and retry
    assert all(p.poll() is None for p in site.procs.values())
    private_nats.start()
    back = time.time()

    # checks flow again end to end: work out, results in, states saved, samples written
    wait_until(lambda: site.query("SELECT count(DISTINCT host) FROM sample WHERE ts > %s",
                                  back)[0][0] == 3, timeout=20, what="samples after restart")
    # and a fault injected after the restart is still detected and becomes an incident
    site.lab.bmc["xs2"].set_sensor("temperature", "CPU1 Temp", 105.0)
    wait_until(lambda: site.query("SELECT count(*) FROM incident WHERE host = 'xs2'")[0][0],
               timeout=20, what="an incident after the restart")
    assert all(p.poll() is None for p in site.procs.values())
    assert "reconnected" in site.log("mA").lower()
    assert "reconnected" in site.log("sat1").lower()
