"""kill -9 of `poolwarden host maintenance` mid-job, then a restart that finishes it once.

The lab runs in this test process; the CLI runs as a real separate process that we kill
with SIGKILL at a chosen point, observed through its journal (the SQLite file).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from poolwarden.lab import Lab, Layout
from poolwarden.store.db import Store
from poolwarden.store.journal import RemediationJournal, RemediationRecord


def slow_layout() -> Layout:
    return Layout.model_validate({
        "pool": {"name": "resume-pool", "master": "xs1"},
        "hosts": [{"name": n, "memory_gib": 64} for n in ("xs1", "xs2", "xs3")],
        "vms": [
            {"name": "vm-a", "memory_gib": 6, "host": "xs1"},
            {"name": "vm-b", "memory_gib": 6, "host": "xs1"},
            {"name": "vm-c", "memory_gib": 6, "host": "xs1"},
            {"name": "vm-d", "memory_gib": 6, "host": "xs1"},
            {"name": "other", "memory_gib": 4, "host": "xs2"},
        ],
        "credentials": {"user": "root", "password": "lab"},
        # 6 GiB at 8 GiB/s: each migration runs for 0.75 s, a wide window to kill in.
        "migration": {"speed_gib_per_s": 8},
    })


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab(slow_layout()) as running:
        yield running


def start_cli(lab: Lab, db: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "POOLWARDEN_XAPI_PASSWORD": "lab"}
    return subprocess.Popen(
        [sys.executable, "-m", "poolwarden", "host", "maintenance", "xs1",
         "--url", lab.urls["xs2"], "--store", f"sqlite:///{db}", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def wait_for(db: Path, cond: Callable[[RemediationRecord], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            store = Store.open(f"sqlite:///{db}", migrate=False)
            try:
                recs = RemediationJournal(store).recent(limit=1)
            except OperationalError:  # the schema may not exist yet
                recs = []
            finally:
                store.close()
            if recs and cond(recs[0]):
                return
        time.sleep(0.02)
    raise AssertionError("the journal never reached the awaited state")


def migrating(rec: RemediationRecord) -> bool:
    return any(s.kind == "migrate_vm" and s.status == "running" and s.task_ref
               for s in rec.steps)


def one_migration_done(rec: RemediationRecord) -> bool:
    return any(s.kind == "migrate_vm" and s.status == "done" for s in rec.steps)


def master_moved(rec: RemediationRecord) -> bool:
    return rec.steps[0].kind == "designate_master" and rec.steps[0].status == "done"


@pytest.mark.parametrize("kill_when", [master_moved, migrating, one_migration_done],
                         ids=["after-handover", "mid-migration", "after-a-migration"])
def test_kill_9_then_restart_completes_exactly_once(
        lab: Lab, tmp_path: Path, kill_when: Callable[[RemediationRecord], bool]) -> None:
    db = tmp_path / "journal.db"
    first = start_cli(lab, db)
    try:
        wait_for(db, kill_when)
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=10)
    assert first.returncode == -signal.SIGKILL

    second = start_cli(lab, db)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, out + err
    report = json.loads(out)
    assert report["status"] == "done"
    assert report["host"] == "xs1"
    assert report["after"]["xs1"] == []
    # The job was resumed, not planned again: one remediation in the journal.
    store = Store.open(f"sqlite:///{db}")
    try:
        recs = RemediationJournal(store).recent()
    finally:
        store.close()
    assert [r.status for r in recs] == ["done"]
    assert all(s.status in ("done", "skipped") for s in recs[0].steps)
    # Every VM of xs1 moved exactly once, and nothing else moved.
    moved = sorted(m.vm for m in lab.sim.migrations)
    assert moved == ["vm-a", "vm-b", "vm-c", "vm-d"]
    assert lab.master_name != "xs1"
    assert lab.sim.layout()["xs1"] == []
