"""Hosts, pools and maintenance through the REST API, against the lab's XenAPI simulator."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from poolwarden.api.app import create_app
from poolwarden.api.auth import create_token
from poolwarden.config.models import Config
from poolwarden.lab import Lab
from poolwarden.messages import CheckResult, Reading, State
from poolwarden.service import Monitor
from poolwarden.store.db import Store
from poolwarden.store.lease import StoreLease

CPU = "snmp/temperature/CPU1 Temp"


def config_for(lab: Lab) -> Config:
    return Config.model_validate({"pools": [{
        "name": "lab-pool",
        "xapi": {"url": lab.urls[lab.master_name], "user": "root", "password": "lab"},
        "hosts": [{"name": n, "address": "127.0.0.1"} for n in sorted(lab.urls)],
    }]})


@pytest.fixture
def monitor(lab: Lab, store: Store) -> Monitor:
    return Monitor(config_for(lab), store)


@pytest.fixture
def client(monitor: Monitor, store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(monitor, store)) as c:
        yield c


@pytest.fixture
def tokens(store: Store) -> dict[str, dict[str, str]]:
    return {role: {"Authorization": f"Bearer {create_token(store, role, role + '-p')}"}
            for role in ("viewer", "operator")}


def feed(monitor: Monitor, results: list[CheckResult]) -> None:
    for r in results:
        monitor.engine.process(r, r.ts)
        monitor._checks_of.setdefault(r.host, set()).add(r.check)
        monitor._last[r.host, r.check] = r
        monitor.samples.add(r)


def reading(host: str, value: float, state: State, ts: float) -> CheckResult:
    return CheckResult(host, CPU, state, f"CPU1 Temp {value} C", ts,
                       reading=Reading("temperature", "CPU1 Temp", value, "C", 85.0, 98.0))


def test_pool_page_data_shows_master_and_vms_per_host(
        client: TestClient, tokens: dict[str, dict[str, str]]) -> None:
    r = client.post("/api/v1/pools/lab-pool/refresh", headers=tokens["viewer"])
    assert r.status_code == 200, r.text
    pool = client.get("/api/v1/pools/lab-pool", headers=tokens["viewer"]).json()
    assert pool["master"] == "xstest1"
    hosts = {h["name"]: h for h in pool["hosts"]}
    assert hosts["xstest1"]["master"]
    assert not hosts["xstest2"]["master"]
    assert hosts["xstest2"]["vms"] == ["TST-ubuntu12-2", "db-local", "web-01"]
    assert pool["halted_vms"] == ["win-template-builder"]
    assert pool["error"] is None
    assert [p["name"] for p in client.get("/api/v1/pools", headers=tokens["viewer"]).json()
            ] == ["lab-pool"]
    assert client.get("/api/v1/pools/nope", headers=tokens["viewer"]).status_code == 404


def test_pool_that_cannot_be_read_keeps_its_error(lab: Lab, store: Store,
                                                   tokens: dict[str, dict[str, str]]) -> None:
    bad = Config.model_validate({"pools": [{
        "name": "lab-pool", "xapi": {"url": lab.urls[lab.master_name], "user": "root",
                                     "password": "wrong"}, "hosts": [{"name": "xstest1"}]}]})
    with TestClient(create_app(Monitor(bad, store), store)) as c:
        doc = c.post("/api/v1/pools/lab-pool/refresh", headers=tokens["viewer"]).json()
    assert doc["hosts"] == []
    assert "refused the credentials" in doc["error"]
    assert doc["error_at"] is not None


def test_hosts_and_host_detail_with_readings_and_history(
        client: TestClient, monitor: Monitor, tokens: dict[str, dict[str, str]]) -> None:
    now = time.time()
    feed(monitor, [reading("xstest1", 70.0 + i, State.OK, now - 60 + i) for i in range(5)])
    feed(monitor, [CheckResult("xstest2", CPU, State.CRITICAL, "hot", now,
                               reading=Reading("temperature", "CPU1 Temp", 101.0, "C",
                                               85.0, 98.0))] * 3)
    client.post("/api/v1/pools/lab-pool/refresh", headers=tokens["viewer"])
    hosts = client.get("/api/v1/hosts", headers=tokens["viewer"]).json()
    assert hosts[0]["name"] == "xstest2"  # worst first
    assert hosts[0]["state"] == "CRITICAL"
    assert hosts[0]["checks"]["CRITICAL"] == 1
    x1 = next(h for h in hosts if h["name"] == "xstest1")
    assert (x1["master"], x1["enabled"], x1["vms"]) == (True, True, 1)
    detail = client.get("/api/v1/hosts/xstest1", headers=tokens["viewer"]).json()
    [check] = detail["checks_detail"]
    assert check["reading"]["value"] == 74.0
    assert (check["reading"]["warn"], check["reading"]["crit"]) == (85.0, 98.0)
    history = client.get("/api/v1/hosts/xstest1/history", params={"check": CPU},
                         headers=tokens["viewer"]).json()
    assert [p["value"] for p in history] == [70.0, 71.0, 72.0, 73.0, 74.0]
    assert client.get("/api/v1/hosts/nope", headers=tokens["viewer"]).status_code == 404


def test_maintenance_dry_run_plans_and_changes_nothing(
        client: TestClient, tokens: dict[str, dict[str, str]], lab: Lab) -> None:
    r = client.post("/api/v1/hosts/xstest1/maintenance", json={"dry_run": True},
                    headers=tokens["operator"])
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["status"], doc["dry_run"], doc["feasible"], doc["finished"]) == (
        "dry_run", True, True, True)
    assert doc["steps"][0]["name"] == "designate_master"
    pool = client.post("/api/v1/pools/lab-pool/refresh", headers=tokens["viewer"]).json()
    assert pool["master"] == "xstest1"
    assert all(h["enabled"] for h in pool["hosts"])


def test_maintenance_needs_an_operator(client: TestClient,
                                       tokens: dict[str, dict[str, str]]) -> None:
    r = client.post("/api/v1/hosts/xstest1/maintenance", json={"dry_run": True},
                    headers=tokens["viewer"])
    assert r.status_code == 403
    r = client.post("/api/v1/hosts/nope/maintenance", json={"dry_run": True},
                    headers=tokens["operator"])
    assert r.status_code == 404


def test_maintenance_runs_in_the_background_and_is_journaled(
        client: TestClient, tokens: dict[str, dict[str, str]]) -> None:
    r = client.post("/api/v1/hosts/xstest2/maintenance", json={},
                    headers=tokens["operator"])
    assert r.status_code in (200, 202), r.text
    rid = r.json()["remediation"]

    def finished() -> dict[str, Any] | None:
        rec: dict[str, Any] = client.get(f"/api/v1/remediations/{rid}",
                                         headers=tokens["viewer"]).json()
        return rec if rec["finished_at"] else None

    deadline = time.monotonic() + 30
    while (rec := finished()) is None:
        assert time.monotonic() < deadline, "maintenance did not finish"
        time.sleep(0.1)
    # db-local sits on local storage: the plan is infeasible and nothing moved
    assert rec["status"] == "infeasible"
    r = client.post("/api/v1/hosts/xstest3/maintenance", json={"wait": True},
                    headers=tokens["operator"])
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "done"
    pool = client.get("/api/v1/pools/lab-pool", headers=tokens["viewer"]).json()
    x3 = next(h for h in pool["hosts"] if h["name"] == "xstest3")
    assert (x3["enabled"], x3["vms"]) == (False, [])
    assert pool["last_remediation"]["host"] == "xstest3"
    moved = sorted(r.json()["before"]["xstest3"])

    r = client.post("/api/v1/hosts/xstest3/enable", json={"restore": True},
                    headers=tokens["viewer"])
    assert r.status_code == 403
    r = client.post("/api/v1/hosts/xstest3/enable", json={"restore": True, "dry_run": True},
                    headers=tokens["operator"])
    assert (r.status_code, r.json()["status"]) == (200, "dry_run")
    assert sorted(r.json()["after"]["xstest3"]) == moved
    r = client.post("/api/v1/hosts/xstest3/enable", json={"restore": True, "wait": True},
                    headers=tokens["operator"])
    assert r.status_code == 200, r.text
    assert (r.json()["goal"], r.json()["status"]) == ("exit_maintenance", "done")
    pool = client.get("/api/v1/pools/lab-pool", headers=tokens["viewer"]).json()
    x3 = next(h for h in pool["hosts"] if h["name"] == "xstest3")
    assert (x3["enabled"], sorted(x3["vms"])) == (True, moved)
    rec = pool["last_remediation"]
    assert (rec["goal"], rec["requested_by"]) == ("exit_maintenance", "api:operator-p")


def test_maintenance_refused_while_the_pool_is_busy(
        client: TestClient, store: Store, tokens: dict[str, dict[str, str]]) -> None:
    lease = StoreLease(store, "pool:lab-pool", ttl=60)
    lease.acquire()
    try:
        r = client.post("/api/v1/hosts/xstest3/maintenance", json={},
                        headers=tokens["operator"])
    finally:
        lease.release()
    assert r.status_code == 409, r.text
    assert r.json()["error"]["type"] == "LeaseHeld"
