"""Integration fixtures: a running lab (real HTTP on loopback) and official-SDK sessions.

- ``lab``: a started :class:`poolwarden.lab.Lab` on ``tests/fixtures/lab/pool-3hosts.yaml``
  (3 hosts, master xstest1, credentials root/lab) with fast migrations; stopped after.
- ``make_lab``: factory for labs on other layouts (a ``Layout`` or a plain dict).
- ``connect``: factory for logged-in ``XenAPI.Session`` objects (closed after the test).
- ``wait_task``, ``wait_for``: polling helpers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI

from poolwarden.lab import Lab, Layout, load_layout

#: GiB/s: a 4 GiB VM migrates in ~16 ms, so tests stay fast.
FAST_GIB_PER_S = 256.0

MakeLab = Callable[..., Lab]
Connect = Callable[..., Any]


POOL_3HOSTS = Path(__file__).parent.parent / "fixtures" / "lab" / "pool-3hosts.yaml"


def demo_layout() -> Layout:
    """The tests' 3-host pool (not the packaged demo's, which may change for show)."""
    return load_layout(POOL_3HOSTS)


@pytest.fixture
def refs() -> Callable[[Any], tuple[dict[str, str], dict[str, str]]]:
    """Name → ref maps of hosts and VMs, read through a session."""

    def read(session: Any) -> tuple[dict[str, str], dict[str, str]]:
        hosts = {r["name_label"]: ref for ref, r in session.xenapi.host.get_all_records().items()}
        vms = {r["name_label"]: ref for ref, r in session.xenapi.VM.get_all_records().items()}
        return hosts, vms

    return read


@pytest.fixture
def make_lab() -> Iterator[MakeLab]:
    labs: list[Lab] = []

    def make(layout: Layout | dict[str, Any] | None = None, **kwargs: Any) -> Lab:
        if layout is None:
            layout = demo_layout()
        elif isinstance(layout, dict):
            layout = Layout.model_validate(layout)
        kwargs.setdefault("migration_speed_gib_per_s", FAST_GIB_PER_S)
        lab = Lab(layout, **kwargs)
        labs.append(lab)
        return lab.start()

    yield make
    for lab in labs:
        lab.stop()


@pytest.fixture
def lab(make_lab: MakeLab) -> Lab:
    return make_lab()


@pytest.fixture
def connect() -> Iterator[Connect]:
    sessions: list[Any] = []

    def open_session(
        target: Lab | str, *, host: str | None = None, user: str = "root",
        password: str = "lab", login: bool = True,
    ) -> Any:
        """A session on ``target`` (a URL, or a Lab's current master or ``host``)."""
        if isinstance(target, Lab):
            target = target.urls[host or target.master_name]
        session = XenAPI.Session(target)
        sessions.append(session)
        if login:
            session.xenapi.login_with_password(user, password, "1.0", "poolwarden-tests")
        return session

    yield open_session
    for session in sessions:
        session("close")()


def _wait_task(session: Any, task: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record: dict[str, Any] = session.xenapi.task.get_record(task)
        if record["status"] != "pending":
            return record
        time.sleep(0.01)
    raise AssertionError(f"task {task} still pending after {timeout}s")


def _wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


@pytest.fixture
def wait_task() -> Callable[..., dict[str, Any]]:
    """``wait_task(session, task)``: poll until the task is not pending; its record."""
    return _wait_task


@pytest.fixture
def wait_for() -> Callable[..., None]:
    """``wait_for(predicate, timeout=5)``: poll until true, else fail the test."""
    return _wait_for
