"""The xe_ssh driver for real: a real sshd runs the lab's xe, which drives the simulated
pool through the official XenAPI SDK. Nothing is mocked between the driver and the pool.

The xe is the local xe of a pool *member* (``POOLWARDEN_LAB_XAPI`` names xs2), as when
poolwarden SSHes into any host of a pool: xapi forwards its commands to the master.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI

import poolwarden.lab.xe
from poolwarden.config.models import PoolConfig, SshConfig, XeSshConfig
from poolwarden.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    HypervisorError,
    OperationRefused,
)
from poolwarden.hypervisor.base import PoolSnapshot, TaskInfo, TaskStatus
from poolwarden.hypervisor.factory import pool_driver_for
from poolwarden.hypervisor.xe_parse import XeFailure, parse_failure, parse_minimal, parse_records
from poolwarden.hypervisor.xe_ssh import XeSshDriver
from poolwarden.hypervisor.xenapi import XenAPIDriver
from poolwarden.lab import Lab, Layout
from poolwarden.remediate.executor import ExecutorSettings
from poolwarden.remediate.maintenance import host_maintenance
from poolwarden.scripts.ssh import REMOTE_GRACE, SshTarget
from poolwarden.store.db import Store
from poolwarden.store.journal import RemediationJournal, RemediationRecord
from sshd_server import Sshd, alive, wait_dead

FAST = ExecutorSettings(poll_interval=0.02, retry_delay=0.05)


def pool_layout(speed: float = 256.0, extra: tuple[dict[str, Any], ...] = ()) -> Layout:
    return Layout.model_validate({
        "pool": {"name": "xe-pool", "master": "xs1"},
        "hosts": [{"name": n, "memory_gib": 64} for n in ("xs1", "xs2", "xs3")],
        "vms": [
            {"name": "web-1", "memory_gib": 4, "host": "xs1"},
            {"name": "web-2", "memory_gib": 4, "host": "xs1"},
            {"name": "db-1", "memory_gib": 6, "host": "xs1"},
            {"name": "cache", "memory_gib": 8, "host": "xs2"},
            {"name": "local-db", "memory_gib": 8, "host": "xs3", "local_storage": True},
            {"name": "stopped", "memory_gib": 2, "host": "xs2", "power_state": "Halted"},
            *extra,
        ],
        "credentials": {"user": "root", "password": "lab"},
        "migration": {"speed_gib_per_s": speed},
    })


def write_xe(directory: Path, lab: Lab, host: str = "xs2") -> Path:
    """The ``xe`` sshd runs: the lab's emulator as the local xe of ``host``."""
    wrapper = directory / "xe"
    wrapper.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        export POOLWARDEN_LAB_XAPI='{lab.urls[host]}'
        export POOLWARDEN_LAB_USER=root POOLWARDEN_LAB_PASSWORD=lab
        exec '{sys.executable}' '{poolwarden.lab.xe.__file__}' "$@"
        """))
    wrapper.chmod(0o755)
    return wrapper


def target(sshd: Sshd, known_hosts: Path | None = None, *, address: str = "127.0.0.1",
           key_file: Path | None = None) -> SshTarget:
    return SshTarget("xe-pool", address, key_file or sshd.key_file,
                     known_hosts or sshd.known_hosts, port=sshd.port)


#: loopback addresses where nothing listens (sshd listens on 127.0.0.1 only): refused
DEAD, DEAD_TOO = "127.0.0.2", "127.0.0.3"


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab(pool_layout()) as running:
        yield running


@pytest.fixture
def xe_path(tmp_path: Path, lab: Lab) -> Path:
    return write_xe(tmp_path, lab)


@pytest.fixture
def driver(sshd: Sshd, xe_path: Path) -> Iterator[XeSshDriver]:
    with XeSshDriver(target(sshd), xe=str(xe_path), timeout=30) as d:
        yield d


@pytest.fixture
def sdk(lab: Lab) -> Iterator[Any]:
    session = XenAPI.Session(lab.urls[lab.master_name])
    session.xenapi.login_with_password("root", "lab", "2.0", "tests")
    yield session.xenapi
    session.xenapi.session.logout()


def uuids(sdk: Any) -> dict[str, str]:
    """name → uuid of every host and VM."""
    out = {r["name_label"]: r["uuid"] for r in sdk.host.get_all_records().values()}
    out.update({r["name_label"]: r["uuid"] for r in sdk.VM.get_all_records().values()})
    return out


def as_refs(snap: PoolSnapshot, sdk: Any) -> PoolSnapshot:
    """An xe snapshot (uuids) in XenAPI refs, to compare with the XenAPI driver's."""
    ref = {sdk.host.get_uuid(r): r for r in sdk.host.get_all()}
    ref.update({sdk.VM.get_uuid(r): r for r in sdk.VM.get_all()})
    ref.update({sdk.pool.get_uuid(r): r for r in sdk.pool.get_all()})
    hosts = tuple(dataclasses.replace(h, ref=ref[h.ref]) for h in snap.hosts)
    vms = sorted((dataclasses.replace(v, ref=ref[v.ref], resident_on=ref.get(v.resident_on or ""))
                  for v in snap.vms), key=lambda v: (v.name, v.ref))
    return dataclasses.replace(snap, ref=ref[snap.ref], master=ref[snap.master], hosts=hosts,
                               vms=tuple(vms))


def wait_task(driver: XeSshDriver, ref: str, timeout: float = 10.0) -> TaskInfo:
    deadline = time.monotonic() + timeout
    while (info := driver.task(ref)).status is TaskStatus.PENDING:
        assert time.monotonic() < deadline, "task still pending"
        time.sleep(0.02)
    return info


# -- reading ----------------------------------------------------------------------------------
def test_snapshot_is_what_the_xenapi_driver_reads(lab: Lab, driver: XeSshDriver,
                                                  sdk: Any) -> None:
    xenapi = XenAPIDriver(lab.urls["xs2"], "root", "lab")
    try:
        for evacuating in (None, "xs3"):
            ids = uuids(sdk)
            xe_snap = driver.snapshot(ids[evacuating] if evacuating else None)
            api_snap = xenapi.snapshot(sdk.host.get_by_uuid(ids[evacuating])
                                       if evacuating else None)
            assert as_refs(xe_snap, sdk) == api_snap
    finally:
        xenapi.close()
    snap = driver.snapshot(uuids(sdk)["xs3"])
    assert snap.host(snap.master).name == "xs1"  # type: ignore[union-attr]
    assert snap.layout() == {"xs1": ["db-1", "web-1", "web-2"], "xs2": ["cache"],
                             "xs3": ["local-db"]}
    blocked = {v.name: v.blocked[0] for v in snap.vms if v.blocked}
    assert blocked == {"local-db": "VM_REQUIRES_SR"}
    assert driver.vm_host(uuids(sdk)["web-1"]) == uuids(sdk)["xs1"]
    assert driver.vm_host(uuids(sdk)["stopped"]) is None
    assert driver.cpu_features() == {h.name: h.cpu_features for h in snap.hosts}


def test_unknown_host_key_is_refused(sshd: Sshd, xe_path: Path) -> None:
    with pytest.raises(OperationRefused, match="host key not trusted"):
        XeSshDriver(target(sshd, sshd.other_known_hosts), xe=str(xe_path))


# -- several addresses -------------------------------------------------------------------------
def test_a_dead_first_address_falls_back_to_the_next(sshd: Sshd, xe_path: Path) -> None:
    with XeSshDriver(target(sshd, address=DEAD), xe=str(xe_path), timeout=30,
                     fallback_addresses=["127.0.0.1"]) as driver:
        assert driver.target.address == "127.0.0.1"
        assert driver.snapshot().host("xs2") is not None


def test_every_address_dead_names_them_all(sshd: Sshd, xe_path: Path) -> None:
    with pytest.raises(ConnectionFailed) as exc:
        XeSshDriver(target(sshd, address=DEAD), xe=str(xe_path),
                    fallback_addresses=[DEAD_TOO])
    assert exc.value.retryable
    assert f"tried {DEAD}, {DEAD_TOO}" in str(exc.value)


def test_a_refused_key_is_not_tried_on_the_other_addresses(sshd: Sshd, xe_path: Path) -> None:
    with socket.socket() as other:  # the next address: would see a connection
        other.bind((DEAD, sshd.port))
        other.listen(8)
        other.setblocking(False)
        with pytest.raises(AuthenticationFailed):
            XeSshDriver(target(sshd, key_file=sshd.key_file.parent / "other_key"),
                        xe=str(xe_path), timeout=5, fallback_addresses=[DEAD])
        with pytest.raises(BlockingIOError):
            other.accept()


def test_the_factory_starts_at_the_address_that_last_answered(
        sshd: Sshd, xe_path: Path) -> None:
    pool = PoolConfig(name="xe-pool", driver="xe_ssh", xe_ssh=XeSshConfig(
        address=DEAD, fallback_addresses=["127.0.0.1"], xe=str(xe_path), timeout=30,
        ssh=SshConfig(key_file=sshd.key_file, known_hosts=sshd.known_hosts, port=sshd.port)))
    factory = pool_driver_for([pool])
    tried: list[list[str]] = []
    for _ in range(2):
        driver = factory("xe-pool")
        try:
            assert isinstance(driver, XeSshDriver)
            tried.append(driver._ssh.addresses)
            assert driver.target.address == "127.0.0.1"
            assert driver.snapshot().host("xs1") is not None
        finally:
            driver.close()
    assert tried == [[DEAD, "127.0.0.1"], ["127.0.0.1", DEAD]]  # the second: remembered


# -- deadlines ----------------------------------------------------------------------------------
#: an ``xe`` that hangs: it writes its PID and a child's to ``pids`` and waits on the child
HANGING_XE = "#!/bin/sh\necho $$ >> {pids}\nsleep 60 &\necho $! >> {pids}\nwait\n"


def test_a_hanging_xe_times_out_and_dies_on_the_host(sshd: Sshd, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    xe = tmp_path / "hanging-xe"
    xe.write_text(HANGING_XE.format(pids=pids))
    xe.chmod(0o755)
    with XeSshDriver(target(sshd), xe=str(xe), timeout=1) as driver:
        t0 = time.monotonic()
        with pytest.raises(ConnectionFailed, match="did not finish within 1s") as exc:
            driver.vm_host("00000000-0000-4000-8000-000000000000")
        took = time.monotonic() - t0
    assert exc.value.retryable  # the journal resumes the step
    assert took < 1 + 1.5, took
    found = [int(p) for p in pids.read_text().split()]
    assert len(found) == 2  # the read was not run again after its timeout
    try:
        wait_dead(found, REMOTE_GRACE + 4.0)  # the remote deadline ended it
    finally:
        for pid in found:  # never leave a stray sleep behind a failed assertion
            if alive(pid):
                os.kill(pid, 9)


def test_the_lab_xe_prints_what_the_real_one_prints(lab: Lab, sdk: Any) -> None:
    """Local xe of a member is forwarded; remote xe to a member is refused (xapi_cli.ml)."""
    env = {**os.environ, "POOLWARDEN_LAB_XAPI": lab.urls["xs2"],
           "POOLWARDEN_LAB_PASSWORD": "lab"}

    def xe(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "poolwarden.lab.xe", *args], env=env,
                              capture_output=True, text=True, timeout=30, check=False)

    listed = xe("host-list", "params=uuid", "--minimal")
    assert listed.returncode == 0
    assert sorted(parse_minimal(listed.stdout)) == sorted(
        r["uuid"] for r in sdk.host.get_all_records().values())
    vms = xe("vm-list", "power-state=halted")
    assert vms.stdout.endswith("\n\n\n")  # two blank lines after each record
    assert [r["name-label"] for r in parse_records(vms.stdout)] == ["stopped"]
    port = lab.urls["xs2"].rsplit(":", 1)[1]
    remote = xe("-s", "127.0.0.1", "-p", port, "-u", "root", "-pw", "lab", "pool-list")
    assert remote.returncode == 1
    master = lab.urls[lab.master_name].removeprefix("http://")
    assert parse_failure(remote.stderr) == XeFailure("api", "HOST_IS_SLAVE", (master,))
    wrong = xe("-s", "127.0.0.1", "-p", master.rsplit(":", 1)[1], "-u", "root", "-pw", "no",
               "pool-list")
    assert parse_failure(wrong.stderr).kind == "auth"


# -- acting -----------------------------------------------------------------------------------
def test_disable_and_enable_with_the_maintenance_flag(driver: XeSshDriver, sdk: Any) -> None:
    ref = sdk.host.get_by_name_label("xs2")[0]
    host = uuids(sdk)["xs2"]
    for _ in range(2):  # disabling again is harmless (the executor may retry)
        driver.disable_host(host)
        assert sdk.host.get_enabled(ref) is False
        assert sdk.host.get_other_config(ref)["MAINTENANCE_MODE"] == "true"
    driver.enable_host(host)
    assert sdk.host.get_enabled(ref) is True
    assert "MAINTENANCE_MODE" not in sdk.host.get_other_config(ref)


def test_designate_master_through_a_member(lab: Lab, driver: XeSshDriver, sdk: Any) -> None:
    ids = uuids(sdk)
    driver.designate_master(ids["xs3"])
    assert lab.master_name == "xs3"
    assert driver.snapshot().master == ids["xs3"]  # xs2's xe now forwards to xs3


def test_refusals_become_hypervisor_errors(lab: Lab, driver: XeSshDriver, sdk: Any) -> None:
    ids = uuids(sdk)
    with pytest.raises(HypervisorError) as exc:
        driver.shutdown_host(ids["xs2"])  # enabled: XAPI refuses
    assert exc.value.code == "HOST_NOT_DISABLED"
    assert not exc.value.retryable
    # a migration XAPI refuses fails its task with XAPI's code and parameters (uuids)
    task = driver.start_migration(ids["local-db"], ids["xs2"])
    info = wait_task(driver, task)
    assert info.status is TaskStatus.FAILURE
    assert info.error[:2] == ("VM_REQUIRES_SR", ids["local-db"])
    # a second migration of a busy VM: OTHER_OPERATION_IN_PROGRESS, which is transient
    lab.sim.speed_gib_per_s = 8.0  # 8 GiB: the first migration runs for a second
    slow = driver.start_migration(ids["cache"], ids["xs3"])
    time.sleep(0.4)  # let the first vm-migrate reach XAPI
    busy = wait_task(driver, driver.start_migration(ids["cache"], ids["xs1"]))
    assert busy.error[:1] == ("OTHER_OPERATION_IN_PROGRESS",)
    assert wait_task(driver, slow).status is TaskStatus.SUCCESS
    with pytest.raises(HypervisorError) as missing:
        driver.shutdown_host("00000000-0000-4000-8000-000000000000")
    assert missing.value.code == "UUID_INVALID"
    with pytest.raises(OperationRefused, match="not a uuid"):
        driver.vm_host("OpaqueRef:4c5ce8f9-6e1a-4a1a-9fd1-23d6c8a3f6f5")


def test_a_migration_is_followed_by_another_driver(sshd: Sshd, xe_path: Path, sdk: Any,
                                                   lab: Lab) -> None:
    """What a restart sees: task refs of a driver that is gone. The pool answers."""
    ids = uuids(sdk)
    with XeSshDriver(target(sshd), xe=str(xe_path)) as first:
        ref = first.start_migration(ids["web-1"], ids["xs2"])
        assert wait_task(first, ref).status is TaskStatus.SUCCESS
    with XeSshDriver(target(sshd), xe=str(xe_path), orphan_grace=0.3) as second:
        assert second.task(ref).status is TaskStatus.SUCCESS  # the VM is on its target
        # a migration whose xe never reached xapi (killed at once): after the grace
        # period the driver starts it, once
        lost = ref.replace(ids["xs2"], ids["xs3"])
        assert second.task(lost).status is TaskStatus.PENDING
        assert wait_task(second, lost).status is TaskStatus.SUCCESS
        halted = f"xe-migrate:{ids['stopped']}:{ids['xs3']}:00000000"
        for bad in (halted, "OpaqueRef:a-xenapi-task"):
            with pytest.raises(HypervisorError) as exc:
                second.task(bad)
            assert exc.value.code == "HANDLE_INVALID"
    assert [(m.vm, m.target) for m in lab.sim.migrations] == [("web-1", "xs2"),
                                                              ("web-1", "xs3")]


# -- the whole job --------------------------------------------------------------------------
def test_maintenance_of_the_master_with_the_factory(lab: Lab, sshd: Sshd, xe_path: Path,
                                                    sdk: Any, tmp_path: Path) -> None:
    pool = PoolConfig(name="xe-pool", driver="xe_ssh", xe_ssh=XeSshConfig(
        address="127.0.0.1", xe=str(xe_path), timeout=30,
        ssh=SshConfig(key_file=sshd.key_file, known_hosts=sshd.known_hosts, port=sshd.port)))
    driver = pool_driver_for([pool])("xe-pool")
    assert isinstance(driver, XeSshDriver)
    store = Store.open(f"sqlite:///{tmp_path}/pw.db")
    try:
        out = host_maintenance(driver, store, "xs1", settings=FAST)
    finally:
        driver.close()
        store.close()
    assert out.ok, out.to_json()
    assert out.master_before == "xs1"
    assert out.master_after != "xs1"
    assert lab.master_name == out.master_after
    assert out.layout_after["xs1"] == []
    assert sorted(m.vm for m in lab.sim.migrations) == ["db-1", "web-1", "web-2"]
    session = XenAPI.Session(lab.urls[lab.master_name])
    session.xenapi.login_with_password("root", "lab", "2.0", "tests")
    try:
        ref = session.xenapi.host.get_by_name_label("xs1")[0]
        assert session.xenapi.host.get_enabled(ref) is False
        assert session.xenapi.host.get_other_config(ref)["MAINTENANCE_MODE"] == "true"
    finally:
        session.xenapi.session.logout()


RUNNER = """
import sys
from pathlib import Path
from poolwarden.hypervisor.xe_parse import XeFailure, parse_failure, parse_minimal, parse_records
from poolwarden.hypervisor.xe_ssh import XeSshDriver
from poolwarden.remediate.executor import ExecutorSettings
from poolwarden.remediate.maintenance import host_maintenance
from poolwarden.scripts.ssh import SshTarget
from poolwarden.store.db import Store

port, key, known, xe, db = sys.argv[1:]
target = SshTarget("xe-pool", "127.0.0.1", key, known, port=int(port))
with XeSshDriver(target, xe=xe) as driver:
    store = Store.open(f"sqlite:///{db}")
    out = host_maintenance(driver, store, "xs2",
                           settings=ExecutorSettings(poll_interval=0.05, retry_delay=0.05))
    print(out.record.status)
    sys.exit(0 if out.ok else 1)
"""


def _journal(db: Path) -> RemediationRecord | None:
    if not db.exists():
        return None
    store = Store.open(f"sqlite:///{db}", migrate=False)
    try:
        recs = RemediationJournal(store).recent(limit=1)
    except Exception:  # the schema may not exist yet
        return None
    finally:
        store.close()
    return recs[0] if recs else None


def _wait(db: Path, cond: Callable[[RemediationRecord], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = _journal(db)
        if rec is not None and cond(rec):
            return
        time.sleep(0.02)
    raise AssertionError("the journal never reached the awaited state")


def test_kill_9_mid_migration_then_restart_migrates_each_vm_once(
        sshd: Sshd, tmp_path: Path) -> None:
    """The maintenance of a member (no hand-over: fewer steps, a faster test)."""
    queue = {"name": "queue", "memory_gib": 6, "host": "xs2"}
    with Lab(pool_layout(speed=8.0, extra=(queue,))) as lab:  # ~1 s: a window to kill in
        xe = write_xe(tmp_path, lab)
        db = tmp_path / "journal.db"
        script = tmp_path / "run.py"
        script.write_text(RUNNER)
        argv = [sys.executable, str(script), str(sshd.port), str(sshd.key_file),
                str(sshd.known_hosts), str(xe), str(db)]
        first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=dict(os.environ))
        try:
            _wait(db, lambda r: any(s.kind == "migrate_vm" and s.status == "running"
                                    and s.task_ref for s in r.steps))
        finally:
            first.send_signal(signal.SIGKILL)
            first.communicate(timeout=10)
        second = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        rec = _journal(db)
        assert rec is not None
        assert second.returncode == 0, [(s.title, s.status, s.detail) for s in rec.steps]
        assert rec.status == "done"
        assert all(s.status in ("done", "skipped") for s in rec.steps)
        store = Store.open(f"sqlite:///{db}")
        try:  # the job was resumed, not planned again
            assert [r.status for r in RemediationJournal(store).recent()] == ["done"]
        finally:
            store.close()
        assert sorted(m.vm for m in lab.sim.migrations) == ["cache", "queue"]  # once each
        assert lab.sim.layout()["xs2"] == []
