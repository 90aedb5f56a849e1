"""Restart NATS under a running master and satellite: both reconnect, nothing stays stuck.

The server restarted is a private nats-server (the same Debian binary as the machine's,
with JetStream and its own store directory on a free port): restarting the machine's
server would disturb everything else using it.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dist_harness import Site, wait_until

NATS_SERVER = "/usr/sbin/nats-server"


class PrivateNats:
    def __init__(self, tmp: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.store = tmp / "jetstream"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port),
                                      "-js", "-sd", str(self.store)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._listening, timeout=10, what="nats-server listening")

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[PrivateNats]:
    server = PrivateNats(tmp_path)
    server.start()
    yield server
    server.stop()


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
