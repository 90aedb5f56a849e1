"""`poolwarden run` as a real process against the lab's BMC agents (real snmpd over UDP).

The path of a problem end to end: a CPU temperature pushed past the iDRAC's own critical
threshold → SOFT → HARD CRITICAL → one incident; back to normal → resolved. An agent that
dies is one UNKNOWN problem for its host, not one per sensor. Readings land in the store.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from poolwarden.incidents import IncidentManager
from poolwarden.incidents.samples import SampleWriter
from poolwarden.lab import Lab, Layout
from poolwarden.messages import State
from poolwarden.store.db import Store
from poolwarden.store.journal import RemediationJournal
from tls_files import self_signed

CPU = "snmp/temperature/CPU1 Temp"


@pytest.fixture
def lab() -> Iterator[Lab]:
    layout = Layout.model_validate({
        "pool": {"name": "svc-pool", "master": "xs1"},
        "hosts": [{"name": n, "memory_gib": 64, "bmc": {"profile": "dell-idrac"}}
                  for n in ("xs1", "xs2", "xs3")],
        "vms": [], "credentials": {"user": "root", "password": "lab"},
    })
    with Lab(layout) as running:
        yield running


def write_config(path: Path, lab: Lab, db: Path, listen: str = "127.0.0.1:0",
                 api_extra: str = "") -> None:
    hosts = []
    for name, endpoint in lab.summary()["snmp"].items():
        address, port = endpoint.rsplit(":", 1)
        hosts.append(f"      - {{name: {name}, address: 127.0.0.1, bmc: {{address: {address}, "
                     f"port: {port}, profile: dell-idrac, snmp: {{timeout: 300ms, "
                     f"retries: 0}}}}}}")
    path.write_text("\n".join([
        f'store: {{url: "sqlite:///{db}"}}',
        f'api: {{listen: "{listen}"{api_extra}}}',
        "monitoring: {snmp_interval: 400ms, retry_interval: 200ms, max_attempts: 2}",
        "pools:",
        "  - name: svc-pool",
        "    hosts:",
        *hosts,
        "checks:",
        '  - {name: dummy, command: [check_dummy, "0", "alive on {host.name}"],'
        ' interval: 400ms, hosts: "xs3"}',
    ]) + "\n")


def wait_until(cond: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def test_run_turns_a_bmc_fault_into_one_incident_and_resolves_it(
        lab: Lab, tmp_path: Path) -> None:
    db, cfg = tmp_path / "pw.db", tmp_path / "poolwarden.yaml"
    write_config(cfg, lab, db)
    proc = subprocess.Popen([sys.executable, "-m", "poolwarden", "run", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ})
    try:
        wait_until(db.exists)
        store = Store.open(f"sqlite:///{db}")
        incidents = IncidentManager(store)
        samples = SampleWriter(store)
        # Readings are being collected from every agent and the plugin.
        wait_until(lambda: samples.history("xs1", CPU, since=0))
        wait_until(lambda: samples.history("xs3", "plugin/dummy", since=0))
        assert incidents.list(status="open") == []

        lab.bmc["xs1"].set_sensor("temperature", "CPU1 Temp", 101.0)  # crit is 98 °C

        def cpu_incident() -> Any:
            return [i for i in incidents.list(status="open") if i.check == CPU]

        opened = wait_until(cpu_incident)
        assert len(opened) == 1
        inc = incidents.get(opened[0].id)
        assert (inc.host, inc.state, inc.severity) == ("xs1", State.CRITICAL, "critical")
        assert "101" in inc.output
        assert inc.events[0].kind == "opened"
        assert inc.value == 101.0
        assert inc.crit == 98.0  # the device's own threshold, scaled from tenths

        lab.bmc["xs1"].reset()
        wait_until(lambda: incidents.get(inc.id).status == "resolved")

        lab.bmc["xs2"].stop()  # the BMC of xs2 dies

        wait_until(lambda: incidents.list(status="open", host="xs2"))
        time.sleep(1.5)  # several more poll rounds: still one problem, no storm
        problems = incidents.list(status="open", host="xs2")
        assert [(i.check, i.state) for i in problems] == [("snmp/agent", State.UNKNOWN)]
        assert incidents.list(status="open", host="xs1") == []
        store.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "incident" in err


def test_run_refuses_a_bad_config_with_file_line_field(tmp_path: Path) -> None:
    cfg = tmp_path / "poolwarden.yaml"
    cfg.write_text("monitoring:\n  max_attempts: zero\n")
    r = subprocess.run([sys.executable, "-m", "poolwarden", "run", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 2
    assert f"{cfg}:2: monitoring.max_attempts" in r.stderr


def test_run_dry_run_plans_and_journals_but_changes_no_pool(lab: Lab, tmp_path: Path) -> None:
    db, cfg = tmp_path / "pw.db", tmp_path / "poolwarden.yaml"
    write_config(cfg, lab, db)
    text = cfg.read_text().replace(
        "    hosts:\n",
        f'    xapi: {{url: "{lab.urls["xs1"]}", user: root, password: lab}}\n    hosts:\n', 1)
    text += ("rules:\n  - {action: evacuate, severity: critical,"
             " match: {kind: temperature, state: CRITICAL}}\n")
    cfg.write_text(text)
    proc = subprocess.Popen(
        [sys.executable, "-m", "poolwarden", "run", "--config", str(cfg), "--dry-run"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(db.exists)
        store = Store.open(f"sqlite:///{db}")
        samples = SampleWriter(store)
        wait_until(lambda: samples.history("xs1", CPU, since=0))
        lab.bmc["xs1"].set_sensor("temperature", "CPU1 Temp", 101.0)
        journal = RemediationJournal(store)
        # The journal says "planned", then "dry_run" once the plan is reported.
        [rec] = wait_until(lambda: [r for r in journal.recent(limit=5)
                                    if r.status == "dry_run"])
        assert rec.dry_run
        assert rec.host_name == "xs1"
        time.sleep(1.0)  # a few more polls: still nothing done to the pool
        assert lab.master_name == "xs1"
        assert lab.sim.migrations == []
        assert lab.sim.hosts()["xs1"].enabled
        store.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_run_serves_the_api_with_tokens(lab: Lab, tmp_path: Path) -> None:
    db, cfg = tmp_path / "pw.db", tmp_path / "poolwarden.yaml"
    port = free_port()
    write_config(cfg, lab, db, listen=f"127.0.0.1:{port}")
    proc = subprocess.Popen([sys.executable, "-m", "poolwarden", "run", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _get(f"{base}/healthz")[0] == 200)
        made = subprocess.run(
            [sys.executable, "-m", "poolwarden", "token", "create", "--role", "viewer",
             "--name", "e2e", "--store", f"sqlite:///{db}", "--json"],
            capture_output=True, text=True, timeout=60, check=True)
        token = json.loads(made.stdout)["token"]
        assert _get(f"{base}/api/v1/checks")[0] == 401
        checks = wait_until(lambda: (r := _get(f"{base}/api/v1/checks", token))[0] == 200
                            and len(r[1]) > 30 and r[1])
        assert {c["host"] for c in checks} == {"xs1", "xs2", "xs3"}
        status, metrics = _get(f"{base}/metrics", token, raw=True)
        assert status == 200
        assert 'poolwarden_sensor_value{host="xs1",check="snmp/temperature/CPU1 Temp"' in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err


def test_run_refuses_a_taken_api_port(lab: Lab, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = tmp_path / "poolwarden.yaml"
        write_config(cfg, lab, tmp_path / "pw.db", listen=f"127.0.0.1:{port}")
        r = subprocess.run([sys.executable, "-m", "poolwarden", "run", "--config", str(cfg)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2
    assert "api.listen" in r.stderr


def test_run_serves_https_with_the_configured_certificate(lab: Lab, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    cfg = tmp_path / "poolwarden.yaml"
    write_config(cfg, lab, tmp_path / "pw.db", listen=f"127.0.0.1:{port}",
                 api_extra=f', tls_cert: "{cert}", tls_key: "{key}"')
    proc = subprocess.Popen([sys.executable, "-m", "poolwarden", "run", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    trusted = ssl.create_default_context(cafile=str(cert))
    try:
        assert wait_until(lambda: _get(f"https://127.0.0.1:{port}/healthz",
                                       context=trusted)[0] == 200)
        assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 0  # no plain HTTP
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", timeout=5)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err


def test_run_refuses_a_certificate_that_does_not_match_its_key(lab: Lab,
                                                               tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, key = self_signed(other)
    cfg = tmp_path / "poolwarden.yaml"
    write_config(cfg, lab, tmp_path / "pw.db", listen=f"127.0.0.1:{free_port()}",
                 api_extra=f', tls_cert: "{cert}", tls_key: "{key}"')
    r = subprocess.run([sys.executable, "-m", "poolwarden", "run", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2
    assert "api.tls_cert" in r.stderr


def _get(url: str, token: str | None = None, raw: bool = False,
         context: ssl.SSLContext | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                 if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5, context=context) as resp:
            body = resp.read().decode()
            return resp.status, body if raw else json.loads(body)
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except OSError:
        return 0, None
