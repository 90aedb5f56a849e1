"""The simulated pool's state, and the read-only views tests use without HTTP.

:class:`Simulator` owns the object store, sessions, tasks, worker threads and the log of
completed migrations. Handlers change it through the API; tests inspect it through
:attr:`Simulator.migrations`, :meth:`Simulator.layout` and :meth:`Simulator.hosts`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from poolwarden.lab.layout import Layout
from poolwarden.lab.xapi import datamodel
from poolwarden.lab.xapi.build import populate
from poolwarden.lab.xapi.db import Database
from poolwarden.lab.xapi.failure import XapiFailure, now
from poolwarden.lab.xapi.placement import OCCUPYING, free_memory, guests_on, host_live

DAY = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class MigrationRecord:
    """One completed live migration (names, and wall-clock times from ``time.time()``)."""

    vm: str
    source: str
    target: str
    started: float
    finished: float


@dataclass(frozen=True, slots=True)
class HostFlags:
    enabled: bool
    live: bool
    master: bool
    memory_free: int


class Simulator:
    """A XenAPI pool in memory; thread-safe (one re-entrant lock, ``db.lock``)."""

    def __init__(
        self, layout: Layout, *, migration_speed_gib_per_s: float | None = None,
        session_timeout_s: float = DAY, shutdown_seconds: float = 0.1,
        reboot_seconds: float = 1.0,
    ) -> None:
        self.spec = layout
        self.dm = datamodel.load()
        self.db = Database(self.dm)
        self.refs = populate(self.db, layout)
        self.credentials = (layout.credentials.user, layout.credentials.password)
        self.speed_gib_per_s = migration_speed_gib_per_s or layout.migration.speed_gib_per_s
        self.session_timeout_s = session_timeout_s
        self.shutdown_seconds = shutdown_seconds
        self.reboot_seconds = reboot_seconds
        #: session ref → monotonic time of its last use
        self.sessions: dict[str, float] = {}
        #: host ref → auto_enable of its last host.disable (cleared by host.enable)
        self.auto_enable: dict[str, bool] = {}
        #: called with (host name, seconds until it boots again or None) when a host goes down
        self.on_host_down: Callable[[str, float | None], None] | None = None
        self._host_names = {ref: name for name, ref in self.refs.hosts.items()}
        self.stopping = threading.Event()
        self._workers: list[threading.Thread] = []
        self._migrations: list[MigrationRecord] = []

    # -- views for tests and the Lab -----------------------------------------------------

    @property
    def migrations(self) -> list[MigrationRecord]:
        """Completed migrations, oldest first (a copy)."""
        with self.db.lock:
            return list(self._migrations)

    def layout(self) -> dict[str, list[str]]:
        """host name → sorted names of the guest VMs running (or paused) on it."""
        with self.db.lock:
            return {
                name: sorted(
                    str(self.db.get("VM", vm, "name_label")) for vm in guests_on(self.db, ref)
                    if self.db.get("VM", vm, "power_state") in OCCUPYING
                )
                for name, ref in self.refs.hosts.items()
            }

    def hosts(self) -> dict[str, HostFlags]:
        """host name → enabled/live/master flags and free memory."""
        with self.db.lock:
            master = self.db.get("pool", self.refs.pool, "master")
            return {
                name: HostFlags(
                    bool(self.db.get("host", ref, "enabled")), host_live(self.db, ref),
                    ref == master, free_memory(self.db, ref),
                )
                for name, ref in self.refs.hosts.items()
            }

    @property
    def master_name(self) -> str:
        with self.db.lock:
            return self.host_name(self.db.get("pool", self.refs.pool, "master"))

    def host_ref(self, name: str) -> str:
        return self.refs.hosts[name]

    def vm_ref(self, name: str) -> str:
        return self.refs.vms[name]

    def host_name(self, ref: str) -> str:
        """The layout name of a host (stable even if its name_label is changed)."""
        return self._host_names.get(ref) or str(self.db.get("host", ref, "name_label"))

    def vm_name(self, ref: str) -> str:
        return str(self.db.get("VM", ref, "name_label"))

    def address(self, host_name: str) -> str:
        with self.db.lock:
            return str(self.db.get("host", self.refs.hosts[host_name], "address"))

    # -- knobs for the Lab and for tests -------------------------------------------------

    def set_address(self, host_name: str, address: str) -> None:
        """Record where a host's server listens (``127.0.0.1:PORT``)."""
        self.db.set("host", self.refs.hosts[host_name], address=address)

    def set_ha_enabled(self, enabled: bool) -> None:
        """Pretend HA is on (or off): designate_new_master then refuses with HA_IS_ENABLED."""
        self.db.set("pool", self.refs.pool, ha_enabled=enabled)

    def set_live(self, host_name: str, live: bool) -> None:
        """Mark a host alive or dead in host_metrics (the Lab also starts/stops its port)."""
        with self.db.lock:
            metrics = self.db.get("host", self.refs.hosts[host_name], "metrics")
            self.db.set("host_metrics", metrics, live=live, last_updated=now())

    def boot_host(self, host_name: str) -> None:
        """A host came (back) up: live again, enabled unless disabled with auto_enable=False."""
        with self.db.lock:
            ref = self.refs.hosts[host_name]
            self.set_live(host_name, True)
            self.db.set("host", ref, enabled=self.auto_enable.get(ref, True))

    # -- tasks ---------------------------------------------------------------------------

    def new_task(self, name: str) -> str:
        with self.db.lock:
            master = self.db.get("pool", self.refs.pool, "master")
            return self.db.create("task", {
                "name_label": name, "status": "pending", "progress": 0.0, "created": now(),
                "resident_on": master, "allowed_operations": ["cancel"],
            })

    def set_progress(self, task: str | None, progress: float) -> None:
        if task is None:
            return
        with self.db.lock:
            if self.db.exists("task", task):
                self.db.set("task", task, progress=round(min(max(progress, 0.0), 1.0), 3))

    def finish_task(self, task: str, result: Any) -> None:
        """Success; the result travels as XAPI does, as an XML-RPC ``<value>`` string."""
        text = "" if result is None or result == "" else f"<value>{escape(str(result))}</value>"
        with self.db.lock:
            if self.db.exists("task", task):
                self.db.set("task", task, status="success", progress=1.0, finished=now(),
                            result=text, allowed_operations=[])

    def fail_task(self, task: str, failure: XapiFailure) -> None:
        with self.db.lock:
            if self.db.exists("task", task):
                self.db.set("task", task, status="failure", finished=now(),
                            error_info=failure.description, allowed_operations=[])

    # -- workers and time ----------------------------------------------------------------

    def spawn(self, fn: Callable[[], None], name: str) -> threading.Thread:
        """Run ``fn`` in a tracked daemon thread that :meth:`stop` joins."""
        thread = threading.Thread(target=fn, name=name, daemon=True)
        with self.db.lock:
            self._workers = [t for t in self._workers if t.is_alive()]
            self._workers.append(thread)
        thread.start()
        return thread

    def sleep(self, seconds: float) -> None:
        """Simulated work; raises when the lab stops so that workers end promptly."""
        if self.stopping.wait(max(seconds, 0.0)):
            raise XapiFailure("INTERNAL_ERROR", "the lab is stopping")

    def record_migration(self, vm: str, source: str, target: str, started: float) -> None:
        self._migrations.append(MigrationRecord(vm, source, target, started, time.time()))

    def stop(self, timeout: float = 5.0) -> None:
        """Wake every waiter (event.from, migrations) and join the workers."""
        self.stopping.set()
        with self.db.changed:
            self.db.changed.notify_all()
        with self.db.lock:
            workers = list(self._workers)
        deadline = time.monotonic() + timeout
        for thread in workers:
            if thread is not threading.current_thread():
                thread.join(max(deadline - time.monotonic(), 0.0))
