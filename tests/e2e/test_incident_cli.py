"""`poolwarden incident …` as a user runs it, on a SQLite store the test prepares."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import store_cli

from poolwarden.incidents import IncidentManager, archive
from poolwarden.messages import Reading, State, StateChange, StateType
from poolwarden.store.db import Store


def change(host: str, state: State, ts: float) -> StateChange:
    return StateChange(host, "snmp/temperature/CPU1 Temp", State.OK, state, StateType.HARD,
                       3, 3, ts, f"CPU1 Temp {state.name}", True,
                       reading=Reading("temperature", "CPU1 Temp", 91.0, "C", 80.0, 90.0),
                       labels={"pool": "prod-a"})


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """xs1 CRITICAL (open, #1), xs2 WARNING resolved (#2), xs3 WARNING (open, #3)."""
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    store = Store.open(url)
    m = IncidentManager(store)
    m.handle(change("xs1", State.CRITICAL, 1000.0))
    m.handle(change("xs2", State.WARNING, 1001.0))
    m.handle(change("xs2", State.OK, 1002.0))
    m.handle(change("xs3", State.WARNING, 1003.0))
    store.close()
    return url


def pw(store_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return store_cli.run("incident", store_url, *args)


def pw_json(store_url: str, *args: str, code: int = 0) -> Any:
    return store_cli.run_json("incident", store_url, *args, code=code)


def test_list_filters_and_prints_one_json_document(store_url: str) -> None:
    doc = pw_json(store_url, "list")
    assert [(i["id"], i["host"], i["status"]) for i in doc["incidents"]] == [
        (3, "xs3", "open"), (2, "xs2", "resolved"), (1, "xs1", "open")]
    assert "timeline" not in doc["incidents"][0]
    assert doc["incidents"][2]["reading"] == {"value": 91.0, "unit": "C", "warn": 80.0,
                                              "crit": 90.0, "device_status": ""}
    assert [i["id"] for i in pw_json(store_url, "list", "--status", "open")["incidents"]] \
        == [3, 1]
    assert [i["id"] for i in pw_json(store_url, "list", "--host", "xs2")["incidents"]] == [2]


def test_show_has_the_timeline(store_url: str) -> None:
    doc = pw_json(store_url, "show", "2")
    assert (doc["state"], doc["severity"], doc["status"]) == ("OK", "warning", "resolved")
    assert [e["kind"] for e in doc["timeline"]] == ["opened", "resolved"]
    human = pw(store_url, "show", "1")
    assert human.returncode == 0, human.stderr
    assert "#1 CRITICAL xs1" in human.stdout
    assert "opened" in human.stdout
    assert "timeline" in human.stdout


def test_ack_and_comment_record_the_author(store_url: str) -> None:
    doc = pw_json(store_url, "ack", "1", "--comment", "fan ordered", "--author", "alice")
    assert doc["status"] == "acknowledged"
    assert (doc["ack"]["by"], doc["ack"]["comment"]) == ("alice", "fan ordered")
    doc = pw_json(store_url, "comment", "1", "RMA #42")
    assert doc["timeline"][-1]["kind"] == "comment"
    assert doc["timeline"][-1]["author"].startswith("cli:")
    doc = pw_json(store_url, "ack", "3", "--comment", "window", "--expires-in", "2h")
    assert doc["ack"]["expires_at"] > doc["ack"]["at"] + 7000
    listed = pw_json(store_url, "list", "--status", "acknowledged")["incidents"]
    assert [i["id"] for i in listed] == [3, 1]


def test_archived_incidents_are_listed_and_shown(store_url: str) -> None:
    store = Store.open(store_url)
    try:  # xs2, resolved at 1002, moves to the archive
        assert archive(store, resolved_older_than=60.0, samples_older_than=60.0,
                       now=2000.0).incidents == 1
    finally:
        store.close()
    assert [i["id"] for i in pw_json(store_url, "list")["incidents"]] == [3, 1]
    old = pw_json(store_url, "list", "--archived")["incidents"]
    assert [(i["id"], i["archived"]) for i in old] == [(2, True)]
    doc = pw_json(store_url, "show", "2")
    assert doc["archived"] is True
    assert [e["kind"] for e in doc["timeline"]] == ["opened", "resolved"]
    doc = pw_json(store_url, "comment", "2", "too late", code=1)
    assert doc["error"]["type"] == "OperationRefused"


def test_not_found_and_refused_exit_1_usage_exits_2(store_url: str) -> None:
    doc = pw_json(store_url, "show", "99", code=1)
    assert doc["error"]["type"] == "NotFound"
    doc = pw_json(store_url, "ack", "2", "--comment", "late", code=1)
    assert doc["error"]["type"] == "OperationRefused"
    assert "resolved" in doc["error"]["message"]
    doc = pw_json(store_url, "list", "--status", "closed", code=2)
    assert doc["error"]["type"] == "UsageError"
    doc = pw_json(store_url, "ack", "1", "--comment", "x", "--expires-in", "soon", code=2)
    assert "--expires-in" in doc["error"]["message"]
    assert pw(store_url, "ack", "1").returncode == 2  # --comment is required
