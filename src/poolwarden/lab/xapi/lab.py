"""The Lab: a simulated pool whose every host answers XenAPI on its own port.

Real hosts share port 443 on different addresses; on one machine the lab gives every host
its own port instead, so a host record's ``address`` is ``127.0.0.1:PORT`` and clients
connect to ``http://<address>`` — which is also what HOST_IS_SLAVE carries.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any

from poolwarden.lab.bmc import BmcAgent, start_agents, stop_agents
from poolwarden.lab.layout import Layout
from poolwarden.lab.xapi.dispatch import Dispatcher
from poolwarden.lab.xapi.server import HostServer
from poolwarden.lab.xapi.sim import DAY, Simulator

log = logging.getLogger(__name__)
#: Delay between answering host.shutdown and closing the host's port.
CLOSE_DELAY = 0.05


class Lab:
    """Start with :meth:`start` (or ``with Lab(layout) as lab:``), stop with :meth:`stop`.

    ``bind`` is an IPv4 address; ``sim`` is the simulator, for tests to inspect.
    """

    def __init__(
        self, layout: Layout, *, bind: str = "127.0.0.1",
        migration_speed_gib_per_s: float | None = None, session_timeout_s: float = DAY,
    ) -> None:
        self.layout = layout
        self.bind = bind
        # why: a wildcard bind cannot be connected to; advertise loopback instead.
        self.advertise = "127.0.0.1" if bind in ("", "0.0.0.0") else bind  # noqa: S104
        self.sim = Simulator(
            layout, migration_speed_gib_per_s=migration_speed_gib_per_s,
            session_timeout_s=session_timeout_s,
        )
        self.sim.on_host_down = self._host_down
        self.dispatcher = Dispatcher(self.sim)
        self._servers: dict[str, HostServer] = {}
        self._ports: dict[str, int] = {}
        self._guard = threading.Lock()
        self._stopping = threading.Event()
        self._helpers: list[threading.Thread] = []
        #: host name → its BMC's SNMP agent (hosts whose layout has ``bmc``)
        self.bmc: dict[str, BmcAgent] = {}

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Lab:
        """Open one port per host (chosen by the OS) and serve; a no-op when running."""
        if self._servers:
            return self
        self.bmc = start_agents(
            {h.name: h.bmc.model_dump() for h in self.layout.hosts if h.bmc},
            bind=self.advertise)
        for spec in self.layout.hosts:
            self._open(spec.name, 0)
        return self

    def stop(self) -> None:
        """Stop everything: workers, servers (connections closed, threads joined), ports."""
        self._stopping.set()
        self.sim.stop()
        with self._guard:
            servers = list(self._servers.values())
            self._servers.clear()
            helpers = list(self._helpers)
        # why: each close waits up to a poll interval; close the servers in parallel.
        closers = [threading.Thread(target=s.close, daemon=True) for s in servers]
        for thread in closers:
            thread.start()
        for thread in closers + helpers:
            thread.join()
        stop_agents(self.bmc.values())

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what clients need ---------------------------------------------------------------

    @property
    def urls(self) -> dict[str, str]:
        """host name → ``http://127.0.0.1:PORT`` of its XenAPI endpoint."""
        return {name: f"http://{self.advertise}:{port}" for name, port in self._ports.items()}

    @property
    def master_name(self) -> str:
        """The current pool master (follows designate_new_master)."""
        return self.sim.master_name

    def state(self) -> dict[str, Any]:
        """The summary plus what another process needs to reach the BMC agents."""
        return {**self.summary(), "bmc": {
            name: {"address": agent.address, "recording": str(agent.recording),
                   "profile": agent.profile.name if agent.profile else None}
            for name, agent in self.bmc.items()}}

    def summary(self) -> dict[str, Any]:
        snmp = {name: agent.address for name, agent in self.bmc.items()}
        return {"master": self.master_name, "xapi": self.urls, "snmp": snmp}

    # -- host power ----------------------------------------------------------------------

    def power_on(self, host_name: str) -> None:
        """Boot a host that was shut down: its port answers again, host_metrics.live=true."""
        self._open(host_name, self._ports[host_name])
        self.sim.boot_host(host_name)

    def _open(self, name: str, port: int) -> None:
        server = HostServer((self.bind, port), self.dispatcher, name)
        with self._guard:
            self._servers[name] = server
            self._ports[name] = server.port
        self.sim.set_address(name, f"{self.advertise}:{server.port}")
        server.serve()

    def _host_down(self, name: str, reboot_after: float | None) -> None:
        """Called by host.shutdown/reboot (lock held): close the port from another thread."""

        def run() -> None:
            if self._stopping.wait(CLOSE_DELAY):
                return
            with self._guard:
                server = self._servers.pop(name, None)
            if server is not None:
                server.close()
            if reboot_after is not None and not self._stopping.wait(reboot_after):
                self.power_on(name)
                log.info("lab: %s rebooted", name)

        thread = threading.Thread(target=run, name=f"lab-power-{name}", daemon=True)
        with self._guard:
            self._helpers = [t for t in self._helpers if t.is_alive()]
            self._helpers.append(thread)
        thread.start()
