"""Scheduled downtimes through the REST API, on SQLite and PostgreSQL (the store fixture)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from poolwarden.api.app import create_app
from poolwarden.api.auth import create_token
from poolwarden.config.models import Config
from poolwarden.store.db import Store

URL = "/api/v1/downtimes"


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    config = Config.model_validate({"pools": [{
        "name": "lab-pool", "hosts": [{"name": "xs1"}, {"name": "xs2"}]}]})
    with TestClient(create_app(None, store, config=config)) as c:
        yield c


@pytest.fixture
def tokens(store: Store) -> dict[str, dict[str, str]]:
    return {role: {"Authorization": f"Bearer {create_token(store, role, role + '-p')}"}
            for role in ("viewer", "operator")}


def test_operator_schedules_viewer_lists(client: TestClient,
                                         tokens: dict[str, dict[str, str]]) -> None:
    body = {"host": "xs1", "duration": 7200, "comment": "BIOS update"}
    assert client.post(URL, json=body, headers=tokens["viewer"]).status_code == 403
    r = client.post(URL, json=body, headers=tokens["operator"])
    assert r.status_code == 201, r.text
    first = r.json()
    assert (first["host"], first["check"], first["state"], first["author"],
            first["comment"]) == ("xs1", None, "active", "api:operator-p", "BIOS update")
    assert first["ends_at"] - first["starts_at"] == pytest.approx(7200)
    later = time.time() + 86400
    r = client.post(URL, json={"host": "xs2", "check": "snmp/temperature/*",
                               "starts_at": later, "ends_at": later + 3600},
                    headers=tokens["operator"])
    assert r.status_code == 201, r.text
    second = r.json()
    assert (second["check"], second["state"], second["starts_at"]) == (
        "snmp/temperature/*", "scheduled", later)

    listed = client.get(URL, headers=tokens["viewer"]).json()
    assert [(d["id"], d["state"]) for d in listed] == [(first["id"], "active"),
                                                      (second["id"], "scheduled")]
    only = client.get(URL, params={"host": "xs2"}, headers=tokens["viewer"]).json()
    assert [d["id"] for d in only] == [second["id"]]


def test_cancel_keeps_the_record_and_refuses_twice(client: TestClient,
                                                   tokens: dict[str, dict[str, str]]) -> None:
    created = client.post(URL, json={"host": "xs1", "ends_at": time.time() + 600},
                          headers=tokens["operator"]).json()
    path = f"{URL}/{created['id']}"
    assert client.delete(path, headers=tokens["viewer"]).status_code == 403
    r = client.delete(path, headers=tokens["operator"])
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["cancelled_by"]) == ("cancelled", "api:operator-p")
    r = client.delete(path, headers=tokens["operator"])
    assert r.status_code == 409
    assert r.json()["error"]["type"] == "OperationRefused"
    assert "already cancelled" in r.json()["error"]["message"]
    assert client.delete(f"{URL}/999", headers=tokens["operator"]).status_code == 404
    assert client.get(URL, headers=tokens["viewer"]).json() == []
    everything = client.get(URL, params={"all": "true"}, headers=tokens["viewer"]).json()
    assert [(d["id"], d["state"]) for d in everything] == [(created["id"], "cancelled")]


def test_refusals_name_the_reason(client: TestClient,
                                  tokens: dict[str, dict[str, str]]) -> None:
    op = tokens["operator"]
    t = time.time()
    r = client.post(URL, json={"host": "nope", "duration": 60}, headers=op)
    assert r.status_code == 404
    assert "nope" in r.json()["error"]["message"]
    for body in ({"host": "xs1", "ends_at": t + 600, "duration": 600}, {"host": "xs1"}):
        r = client.post(URL, json=body, headers=op)
        assert r.status_code == 422, body
        assert r.json()["error"] == {"type": "UsageError",
                                     "message": "give exactly one of ends_at and duration"}
    r = client.post(URL, json={"host": "xs1", "starts_at": t + 7200, "ends_at": t + 3600},
                    headers=op)
    assert r.status_code == 422
    assert r.json()["error"]["message"] == "a downtime must end after it starts"
    r = client.post(URL, json={"host": "xs1", "starts_at": t - 3600, "ends_at": t - 60},
                    headers=op)
    assert (r.status_code, r.json()["error"]["message"]) == (
        422, "this downtime would already be over")
    assert client.get(URL, params={"all": "true"}, headers=tokens["viewer"]).json() == []


def test_no_token_no_access(client: TestClient) -> None:
    assert client.get(URL).status_code == 401
    assert client.post(URL, json={"host": "xs1", "duration": 60}).status_code == 401
    assert client.delete(f"{URL}/1").status_code == 401
