"""``poolwarden snmp sensors`` as a user runs it: a subprocess against real agents."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from poolwarden.lab.bmc import BmcAgent, V3User

V3 = V3User("cli-user", auth_key="cli-auth-key", priv_key="cli-priv-key")


def pw(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "POOLWARDEN_SNMP_COMMUNITY"}
    return subprocess.run([sys.executable, "-m", "poolwarden", *args], capture_output=True,
                          text=True, timeout=timeout, check=False, env={**env, "COLUMNS": "200"})


@pytest.fixture(scope="module")
def r640() -> Iterator[BmcAgent]:
    with BmcAgent("dell-idrac-r640-cpu-overheat.snmprec", name="cli", v3_users=[V3]) as agent:
        yield agent


def test_json_lists_every_sensor(r640: BmcAgent) -> None:
    done = pw("snmp", "sensors", r640.address, "--community", "public", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert isinstance(doc, list)
    assert len(doc) == 32
    cpu1 = next(s for s in doc if s["name"] == "CPU1 Temp")
    assert cpu1 == {"check": "snmp/temperature/CPU1 Temp", "kind": "temperature",
                    "name": "CPU1 Temp", "value": 101.0, "unit": "°C", "warn": None,
                    "crit": 98.0, "warn_low": None, "crit_low": 3.0,
                    "status": "criticalUpper", "state": "CRITICAL"}
    fan = next(s for s in doc if s["name"] == "System Board Fan1A")
    assert (fan["value"], fan["unit"], fan["status"], fan["state"]) == (4080.0, "RPM", None,
                                                                        "OK")


def test_human_table(r640: BmcAgent) -> None:
    done = pw("snmp", "sensors", r640.address, "--community", "public",
              "--profile", "dell-idrac")
    assert done.returncode == 0, done.stderr
    for text in ("dell-idrac: 32 sensors", "CPU1 Temp", "101 °C", "crit ≥ 98",
                 "criticalUpper", "CRITICAL", "System Board Fan1A"):
        assert text in done.stdout


def test_v3_with_key_files(r640: BmcAgent, tmp_path: Path) -> None:
    (tmp_path / "auth").write_text(V3.auth_key + "\n")
    (tmp_path / "priv").write_text(V3.priv_key + "\n")
    done = pw("snmp", "sensors", r640.address, "--v3-user", V3.name,
              "--auth-key-file", str(tmp_path / "auth"), "--priv-key-file",
              str(tmp_path / "priv"), "--json")
    assert done.returncode == 0, done.stderr
    assert any(s["check"] == "snmp/temperature/CPU1 Temp" for s in json.loads(done.stdout))


def test_unreachable_agent_exits_1_with_a_json_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = pw("snmp", "sensors", f"127.0.0.1:{port}", "--community", "public",
              "--timeout", "0.2", "--json")
    assert done.returncode == 1
    error = json.loads(done.stdout)["error"]
    assert error["type"] == "ConnectionFailed"
    assert f"SNMP 127.0.0.1:{port}" in error["message"]


@pytest.mark.parametrize(("args", "message"), [
    (["127.0.0.1:99999", "--community", "public"], "bad SNMP address"),
    (["127.0.0.1"], "give --community"),
    (["127.0.0.1", "--community", "c", "--timeout", "0"], "timeout"),
    (["127.0.0.1", "--community", "c", "--profile", "nosuch"], "unknown SNMP profile"),
])
def test_bad_usage_exits_2(args: list[str], message: str) -> None:
    done = pw("snmp", "sensors", *args, "--json")
    assert done.returncode == 2
    assert message in json.loads(done.stdout)["error"]["message"]


def test_lab_up_serves_bmcs_that_the_cli_reads(tmp_path: Path) -> None:
    layout = tmp_path / "site.yaml"
    layout.write_text(
        "pool: {name: p, master: xs1}\n"
        "hosts:\n"
        "  - {name: xs1, memory_gib: 64, bmc: {profile: lenovo-xcc}}\n"
        "  - {name: xs2, memory_gib: 64}\n")
    proc = subprocess.Popen([sys.executable, "-m", "poolwarden", "lab", "up", "--layout",
                             str(layout), "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        summary = json.loads(proc.stdout.readline())
        assert list(summary["snmp"]) == ["xs1"]
        done = pw("snmp", "sensors", summary["snmp"]["xs1"], "--community", "public",
                  "--json")
        assert done.returncode == 0, done.stderr
        names = {s["name"] for s in json.loads(done.stdout)}
        assert {"Ambient Temp", "Fan 1 Tach", "systemHealthStat"} <= names
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert proc.returncode == 0
    done = pw("snmp", "sensors", summary["snmp"]["xs1"], "--community", "public",
              "--timeout", "0.2", "--json")
    assert done.returncode == 1  # the lab took its agent down with it
