"""`poolwarden demo` as a user runs it: the closed loop, checked against the pool itself."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any


def demo(*args: str) -> tuple[int, dict[str, Any], str]:
    r = subprocess.run([sys.executable, "-m", "poolwarden", "demo", "--json", *args],
                       capture_output=True, text=True, timeout=180, check=False)
    return r.returncode, json.loads(r.stdout), r.stderr


def test_the_overheating_master_is_evacuated_and_the_right_people_told() -> None:
    code, doc, err = demo()
    assert code == 0, (doc.get("problems"), err[-2000:])
    assert doc["verified"] is True
    assert doc["status"] == "done"
    host = doc["host"]
    assert doc["master_before"] == host != doc["master_after"]
    assert doc["after"][host] == []
    assert sorted(vm for vms in doc["after"].values() for vm in vms) == \
        sorted(vm for vms in doc["before"].values() for vm in vms)  # every VM still runs
    assert [s["name"] for s in doc["steps"]][:2] == ["designate_master", "disable_host"]
    assert all(s["status"] == "done" and s["finished"] >= s["started"] for s in doc["steps"])
    assert doc["fault_at"] < doc["detected_at"] < doc["steps"][0]["started"]
    sent = doc["notifications"]
    critical = {(n["receiver"], n["channel"]) for n in sent if n["severity"] == "critical"}
    assert {("oncall", "json"), ("oncall", "mailto"), ("sysadmins", "mailto")} <= critical
    # The PSU failure: a warning, by email to the sysadmins only — no page, no action.
    warnings = [n for n in sent if n["severity"] == "warning"]
    assert warnings
    assert {(n["receiver"], n["channel"]) for n in warnings} == {("sysadmins", "mailto")}
    assert all(doc["psu_host"] in n["subject"] for n in warnings)
    assert doc["psu_actions"] == 0
    assert all(n["status"] == "sent" for n in sent)
    assert len(doc["webhooks"]) == len([n for n in sent if n["channel"] == "json"])


def test_a_site_that_cannot_absorb_the_host_gets_a_person_not_an_action(
        tmp_path: Path) -> None:
    layout = tmp_path / "tight.yaml"
    layout.write_text(textwrap.dedent("""\
        pool: {name: tight-pool, master: xs1}
        hosts:
          - {name: xs1, memory_gib: 64, bmc: {profile: dell-idrac}}
          - {name: xs2, memory_gib: 16, bmc: {profile: dell-idrac}}
        vms:
          - {name: big-db, memory_gib: 24, host: xs1}
          - {name: app, memory_gib: 8, host: xs1}
        credentials: {user: root, password: lab}
        """))
    code, doc, err = demo("--layout", str(layout))
    assert code == 0, (doc.get("problems"), err[-2000:])
    assert doc["verified"] is True
    assert doc["feasible"] is False
    assert doc["steps"] == []
    assert doc["master_after"] == doc["master_before"] == "xs1"
    assert doc["after"] == doc["before"]
    assert "HOST_NOT_ENOUGH_FREE_MEMORY" in {b["code"] for b in doc["blockers"]}
    # A person is called: a critical page and email that say it could not be done.
    pages = [n for n in doc["notifications"]
             if n["receiver"] == "oncall" and n["channel"] == "json"]
    assert any("cannot be evacuated" in n["subject"] for n in pages), pages


def test_demo_serve_keeps_the_api_up_with_an_admin_token() -> None:
    import signal
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "poolwarden", "demo", "--json",
                             "--serve", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # one JSON document, then the process keeps serving
            lines.append(line)
            if line == "}\n":
                break
        doc = json.loads("".join(lines))
        assert doc["verified"] is True
        api = doc["api"]
        assert api["url"].startswith("http://127.0.0.1:")
        req = urllib.request.Request(f"{api['url']}/api/v1/incidents",
                                     headers={"Authorization": f"Bearer {api['token']}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            incidents = json.loads(resp.read())
        assert any(i["check"] == "snmp/temperature/CPU1 Temp" and i["host"] == doc["host"]
                   for i in incidents)
        req = urllib.request.Request(f"{api['url']}/api/v1/remediations",
                                     headers={"Authorization": f"Bearer {api['token']}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert json.loads(resp.read())[0]["status"] == "done"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
