"""The CLI as a user runs it: `poolwarden lab up` in one process, commands in others."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

LAYOUT = """\
pool: {name: e2e-pool, master: xs1}
hosts:
  - {name: xs1, memory_gib: 64, cpu_features: "0000e3bd-bfebfbff-00000001-20100800",
     bmc: {profile: dell-idrac}}
  - {name: xs2, memory_gib: 64, cpu_features: "0000e3bd-bfebfbff-00000001-28100800"}
  - {name: xs3, memory_gib: 32, cpu_features: "0000e3bd-bfebfbff-00000001-20100800"}
vms:
  - {name: app-1, memory_gib: 4, host: xs1}
  - {name: app-2, memory_gib: 4, host: xs1}
  - {name: local-db, memory_gib: 8, host: xs3, local_storage: true}
credentials: {user: root, password: lab}
migration: {speed_gib_per_s: 64}
"""


def pw(*args: str, env: dict[str, str] | None = None,
       timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "POOLWARDEN_XAPI_PASSWORD": "lab", **(env or {})}
    return subprocess.run([sys.executable, "-m", "poolwarden", *args], capture_output=True,
                          text=True, env=full_env, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def lab_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("lab")
    layout, state = home / "site.yaml", home / "lab.json"
    layout.write_text(LAYOUT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "poolwarden", "lab", "up", "--layout", str(layout), "--json",
         "--state", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    info = json.loads(line)
    info["proc"], info["state"] = proc, str(state)
    yield info
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'journal.db'}"


def test_lab_up_prints_one_json_line_with_every_host(lab_up: dict[str, Any]) -> None:
    assert lab_up["master"] == "xs1"
    assert sorted(lab_up["xapi"]) == ["xs1", "xs2", "xs3"]
    assert all(u.startswith("http://127.0.0.1:") for u in lab_up["xapi"].values())
    assert len(set(lab_up["xapi"].values())) == 3  # every host its own port
    assert sorted(lab_up["snmp"]) == ["xs1"]  # only xs1 has a BMC in this layout


def test_lab_fault_from_another_process(lab_up: dict[str, Any]) -> None:
    def cpu1() -> dict[str, Any]:
        r = pw("snmp", "sensors", lab_up["snmp"]["xs1"], "--community", "public", "--json")
        assert r.returncode == 0, r.stderr
        return next(s for s in json.loads(r.stdout) if s["name"] == "CPU1 Temp")

    assert (cpu1()["value"], cpu1()["state"]) == (55.0, "OK")
    r = pw("lab", "fault", "xs1", "CPU1 Temp", "101", "--state", lab_up["state"])
    assert r.returncode == 0, r.stderr
    hot = cpu1()
    assert (hot["value"], hot["state"]) == (101.0, "CRITICAL")
    r = pw("lab", "fault", "xs1", "CPU1 Temp", "normal", "--state", lab_up["state"])
    assert r.returncode == 0, r.stderr
    assert (cpu1()["value"], cpu1()["state"]) == (55.0, "OK")
    bad = pw("lab", "fault", "xs9", "CPU1 Temp", "101", "--state", lab_up["state"])
    assert bad.returncode == 2
    assert "xs9" in bad.stderr
    none = pw("lab", "fault", "xs1", "CPU1 Temp", "101", "--state", "/nonexistent/lab.json")
    assert none.returncode == 2
    assert "lab up" in none.stderr


def test_pool_status_json_through_a_member(lab_up: dict[str, Any]) -> None:
    r = pw("pool", "status", "--url", lab_up["xapi"]["xs3"], "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["pool"] == "e2e-pool"
    assert doc["master"] == "xs1"
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert hosts["xs1"]["vms"] == ["app-1", "app-2"]
    assert hosts["xs1"]["master"] is True
    assert hosts["xs3"]["memory_total"] == 32 * 1024**3
    assert 0 < hosts["xs3"]["memory_free"] < hosts["xs3"]["memory_total"]


def test_wrong_password_is_a_clear_failure(lab_up: dict[str, Any]) -> None:
    r = pw("pool", "status", "--url", lab_up["xapi"]["xs1"], "--json",
           env={"POOLWARDEN_XAPI_PASSWORD": "nope"})
    assert r.returncode == 1
    err = json.loads(r.stdout)["error"]
    assert err["type"] == "AuthenticationFailed"
    assert "nope" not in r.stdout + r.stderr  # the secret never appears


def test_cpu_level_from_keys_and_from_the_pool(lab_up: dict[str, Any]) -> None:
    r = pw("pool", "cpu-level", "0000e3bd-bfebfbff-00000001-20100800",
           "0000e3bd-bfebfbff-00000001-28100800", "ffffffff-0000000f")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0000e3bd-0000000f-00000000-00000000"
    r = pw("pool", "cpu-level", "--url", lab_up["xapi"]["xs1"], "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["level"] == "0000e3bd-bfebfbff-00000001-20100800"
    assert sorted(doc["hosts"]) == ["xs1", "xs2", "xs3"]


def test_malformed_cpu_key_is_a_usage_error(lab_up: dict[str, Any]) -> None:
    r = pw("pool", "cpu-level", "0000e3bd-xyz-00000001")
    assert r.returncode == 2
    assert "xyz" in r.stderr


def test_maintenance_dry_run_then_infeasible_then_done(
        lab_up: dict[str, Any], store: str) -> None:
    url = lab_up["xapi"]["xs2"]
    dry = pw("host", "maintenance", "xs1", "--url", url, "--store", store, "--dry-run",
             "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["status"] == "dry_run"
    assert [s["name"] for s in plan["steps"]][:2] == ["designate_master", "disable_host"]

    stuck = pw("host", "maintenance", "xs3", "--url", url, "--store", store, "--json")
    assert stuck.returncode == 1
    doc = json.loads(stuck.stdout)
    assert doc["feasible"] is False
    assert doc["blockers"][0]["code"] == "VM_REQUIRES_SR"
    assert doc["blockers"][0]["vm_name"] == "local-db"

    done = pw("host", "maintenance", "xs1", "--url", url, "--store", store)  # human output
    assert done.returncode == 0, done.stderr
    assert "result: done" in done.stdout
    assert "designate" in done.stdout

    status = json.loads(pw("pool", "status", "--url", url, "--json").stdout)
    hosts = {h["name"]: h for h in status["hosts"]}
    assert status["master"] != "xs1"
    assert hosts["xs1"]["enabled"] is False
    assert hosts["xs1"]["vms"] == []
    moved = sorted(plan["before"]["xs1"])
    assert moved

    back = pw("host", "enable", "xs1", "--restore", "--url", url, "--store", store)
    assert back.returncode == 0, back.stderr
    assert "Leaving maintenance of xs1" in back.stdout
    assert "result: done" in back.stdout
    status = json.loads(pw("pool", "status", "--url", url, "--json").stdout)
    hosts = {h["name"]: h for h in status["hosts"]}
    assert hosts["xs1"]["enabled"] is True
    assert sorted(hosts["xs1"]["vms"]) == moved
    again = pw("host", "enable", "xs1", "--url", url, "--store", store, "--json")
    assert again.returncode == 0, again.stderr  # already enabled: nothing to do, still fine
    assert json.loads(again.stdout)["steps"][0]["detail"] == "was already enabled"


def test_bad_layout_names_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent("""\
        pool: {name: p, master: xs1}
        hosts:
          - {name: xs1, memory_gib: lots}
        credentials: {user: root, password: lab}
        """))
    r = pw("lab", "up", "--layout", str(bad))
    assert r.returncode == 2
    assert f"{bad}:3" in r.stderr
    assert "memory_gib" in r.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_lab_stops_cleanly_on_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    layout, state = tmp_path / "site.yaml", tmp_path / "lab.json"
    layout.write_text(LAYOUT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "poolwarden", "lab", "up", "--layout", str(layout), "--json",
         "--state", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    json.loads(proc.stdout.readline())
    assert state.exists()
    proc.send_signal(sig)
    assert proc.wait(timeout=10) == 0
    assert not state.exists()  # a stopped lab leaves no stale state behind
