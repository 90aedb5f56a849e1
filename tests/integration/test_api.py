"""The HTTP API on a real store (SQLite and PostgreSQL): auth, roles, incidents, metrics."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import fastapi.routing
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import text

from poolwarden.api.app import create_app
from poolwarden.api.auth import FailureLimiter, create_token, revoke
from poolwarden.config.models import Config
from poolwarden.incidents import IncidentManager, archive
from poolwarden.messages import CheckResult, Reading, State, StateChange, StateType
from poolwarden.service import Monitor
from poolwarden.store.db import Store
from poolwarden.store.downtimes import Downtimes

PARAM = re.compile(r"\{[^}]+\}")
#: a sample line of the text exposition: name{labels} value
SAMPLE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*"
                    r'(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})?'
                    r" (-?[0-9.eE+-]+|NaN|[+-]Inf)$")


def change(host: str, check: str, new: State, old: State = State.OK, ts: float = 0.0,
           ) -> StateChange:
    return StateChange(host=host, check=check, old_state=old, new_state=new,
                       state_type=StateType.HARD, attempt=3, max_attempts=3,
                       ts=ts or time.time(), output=f"{check} is {new.name}",
                       hard_change=True,
                       reading=Reading("temperature", check, 80.0, "C", 70.0, 90.0))


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(None, store)) as c:
        yield c


@pytest.fixture
def tokens(store: Store) -> dict[str, str]:
    return {role: create_token(store, role, f"{role}-person")
            for role in ("viewer", "operator", "admin")}


@pytest.fixture
def incidents(store: Store) -> list[int]:
    result = IncidentManager(store).handle_many([
        change("xs1", "snmp/temperature/CPU1", State.CRITICAL),
        change("xs2", "plugin/ssh", State.WARNING),
    ])
    return list(result.incident_ids)


#: The only routes anybody may call without credentials: liveness, and the dashboard's way
#: in — the redirect to it, its login form (GET and POST), the static files the form needs.
PUBLIC = {("GET", "/healthz"), ("GET", "/"), ("GET", "/ui/login"), ("POST", "/ui/login"),
          ("GET", "/ui/static/{name}")}
#: authenticated by Slack's request signature over the body instead of a token (404 while
#: chat.slack is not configured, 401 for a bad signature: see api/slack.py)
SIGNED = {"/chat/slack/commands", "/chat/slack/interactive"}


def every_route(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every API route, those of the included routers too: recent
    FastAPI keeps those behind one ``_IncludedRouter`` entry of ``app.routes``."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    found = []
    for route in (iterate(app.routes) if iterate is not None else app.routes):
        if isinstance(getattr(route, "original_route", route), APIRoute):
            found += [(method, route.path) for method in sorted(route.methods or ())]
    return found


def test_every_route_but_the_public_ones_refuses_without_credentials(
        store: Store, client: TestClient) -> None:
    routes = every_route(client.app)
    paths = {path for _, path in routes}
    assert paths >= {"/metrics", "/openapi.json", "/api/v1/tokens",  # core
                     "/api/v1/hosts", "/ui/", "/ui/incidents/{incident_id}/ack"}  # routers
    assert set(routes) >= PUBLIC
    let_through = set()
    for method, template in routes:
        path = PARAM.sub("1", template)
        for headers in ({}, auth("pw_notavalidtokenatall"), {"Authorization": "Basic x"}):
            r = client.request(method, path, headers=headers, follow_redirects=False)
            if template in SIGNED:
                assert r.status_code in (401, 404), (method, path, r.status_code)
            elif template.startswith("/ui/") and (method, template) not in PUBLIC:
                # the dashboard: no session cookie, no access (tokens do not count)
                assert r.status_code == 303, (method, path, r.status_code)
                assert r.headers["location"].startswith("/ui/login?next="), path
                live = client.request(method, path, headers={"X-Requested-With": "x"},
                                      follow_redirects=False)
                assert (live.status_code, live.headers["X-Login"]) == (401, "/ui/login")
            elif r.status_code == 401:
                assert "WWW-Authenticate" in r.headers
            else:
                let_through.add((method, template))
        client.app.state.auth.limiter = FailureLimiter()  # type: ignore[attr-defined]
    assert let_through == PUBLIC


def test_roles_are_ordered(client: TestClient, tokens: dict[str, str],
                           incidents: list[int]) -> None:
    iid = incidents[0]
    r = client.post(f"/api/v1/incidents/{iid}/ack", json={"comment": "mine"},
                    headers=auth(tokens["viewer"]))
    assert r.status_code == 403
    r = client.post("/api/v1/tokens", json={"role": "viewer", "name": "x"},
                    headers=auth(tokens["operator"]))
    assert r.status_code == 403
    for role in ("viewer", "operator", "admin"):
        assert client.get("/api/v1/incidents", headers=auth(tokens[role])).status_code == 200
    assert client.get("/openapi.json", headers=auth(tokens["viewer"])).json()["paths"]


def test_operator_acks_and_comments_as_the_token_name(
        client: TestClient, tokens: dict[str, str], incidents: list[int]) -> None:
    iid = incidents[0]
    r = client.post(f"/api/v1/incidents/{iid}/ack", json={"comment": "on it"},
                    headers=auth(tokens["operator"]))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "acknowledged"
    assert r.json()["ack"]["by"] == "operator-person"
    r = client.post(f"/api/v1/incidents/{iid}/comment", json={"text": "fan replaced"},
                    headers=auth(tokens["operator"]))
    assert r.status_code == 200
    timeline = client.get(f"/api/v1/incidents/{iid}", headers=auth(tokens["viewer"])
                          ).json()["timeline"]
    assert [(e["kind"], e["author"]) for e in timeline][-2:] == [
        ("acknowledged", "operator-person"), ("comment", "operator-person")]
    assert timeline[-1]["message"] == "fan replaced"


def test_incident_list_filters_and_errors(client: TestClient, tokens: dict[str, str],
                                          incidents: list[int]) -> None:
    h = auth(tokens["viewer"])
    assert len(client.get("/api/v1/incidents", headers=h).json()) == 2
    found = client.get("/api/v1/incidents", params={"host": "xs1"}, headers=h).json()
    assert [i["host"] for i in found] == ["xs1"]
    assert "timeline" not in found[0]
    found = client.get("/api/v1/incidents", params={"severity": "warning"}, headers=h).json()
    assert [i["check"] for i in found] == ["plugin/ssh"]
    assert client.get("/api/v1/incidents", params={"status": "acknowledged"},
                      headers=h).json() == []
    r = client.get("/api/v1/incidents", params={"status": "bogus"}, headers=h)
    assert r.status_code == 422
    assert r.json()["error"]["type"] == "UsageError"
    r = client.get("/api/v1/incidents/999999", headers=h)
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "NotFound"


def test_archived_incidents_are_listed_read_and_refuse_changes(
        store: Store, client: TestClient, tokens: dict[str, str], incidents: list[int]) -> None:
    IncidentManager(store).handle_many([change("xs2", "plugin/ssh", State.OK, State.WARNING,
                                               ts=time.time())])
    moved = archive(store, resolved_older_than=0.0, samples_older_than=86400.0,
                    now=time.time() + 1)
    assert moved.incidents == 1
    h = auth(tokens["viewer"])
    live = client.get("/api/v1/incidents", headers=h).json()
    assert [i["host"] for i in live] == ["xs1"]
    old = client.get("/api/v1/incidents", params={"archived": "true"}, headers=h).json()
    assert [(i["host"], i["status"], i["archived"]) for i in old] == [
        ("xs2", "resolved", True)]
    one = client.get(f"/api/v1/incidents/{incidents[1]}", headers=h).json()
    assert one["archived"] is True
    assert [e["kind"] for e in one["timeline"]][-1] == "resolved"
    r = client.post(f"/api/v1/incidents/{incidents[1]}/comment", json={"text": "late"},
                    headers=auth(tokens["operator"]))
    assert r.status_code == 409
    assert "archived" in r.json()["error"]["message"]


def test_admin_creates_tokens_hashed_at_rest(store: Store, client: TestClient,
                                             tokens: dict[str, str]) -> None:
    r = client.post("/api/v1/tokens", json={"role": "operator", "name": "ci"},
                    headers=auth(tokens["admin"]))
    assert r.status_code == 201
    secret = r.json()["token"]
    assert secret.startswith(r.json()["token_id"])
    ok = client.post("/api/v1/incidents/1/comment", json={"text": "x"}, headers=auth(secret))
    assert ok.status_code == 404  # authorised as operator; the incident does not exist
    bad = client.post("/api/v1/tokens", json={"role": "root", "name": "x"},
                      headers=auth(tokens["admin"]))
    assert bad.status_code == 422
    with store.session() as s:
        dump = repr(s.execute(text("SELECT * FROM api_token")).all())
    for token in (secret, *tokens.values()):
        assert token not in dump
        assert token[15:] not in dump  # only the id prefix is in clear
    revoke(store, r.json()["token_id"])
    assert client.get("/api/v1/incidents", headers=auth(secret)).status_code == 401


def test_failed_authentications_are_rate_limited(store: Store, tokens: dict[str, str]) -> None:
    with TestClient(create_app(None, store, limiter=FailureLimiter(limit=3))) as c:
        for _ in range(3):
            assert c.get("/api/v1/incidents", headers=auth("pw_guess" + "x" * 40)
                         ).status_code == 401
        r = c.get("/api/v1/incidents", headers=auth(tokens["viewer"]))
        assert r.status_code == 429  # even a good token, until the window passes
        assert int(r.headers["Retry-After"]) > 0
        assert c.get("/healthz").status_code == 200


def test_notifications_and_remediations_read_the_store(client: TestClient,
                                                       tokens: dict[str, str]) -> None:
    h = auth(tokens["viewer"])
    assert client.get("/api/v1/notifications", headers=h).json() == []
    assert client.get("/api/v1/remediations", headers=h).json() == []
    assert client.get("/api/v1/checks", headers=h).status_code == 503  # no monitor here


def monitor_for(store: Store) -> Monitor:
    cfg = Config.model_validate({"store": {"url": "sqlite://"},
                                 "pools": [{"name": "p", "hosts": [{"name": "xs1"}]}]})
    return Monitor(cfg, store)


def feed(monitor: Monitor, results: list[CheckResult]) -> None:
    async def run() -> None:
        await monitor._evaluate(results)  # the bus handler: what a poll round delivers

    asyncio.run(run())


def test_checks_and_metrics_from_a_monitor(store: Store, tokens: dict[str, str],
                                           incidents: list[int]) -> None:
    monitor = monitor_for(store)
    now = time.time()
    feed(monitor, [CheckResult("xs1", "plugin/ok", State.OK, "fine", now),
                   CheckResult("xs1", "plugin/bad", State.CRITICAL, "on fire", now),
                   CheckResult("xs2", "plugin/meh", State.WARNING, "meh", now)])
    with TestClient(create_app(monitor, store)) as c:
        h = auth(tokens["viewer"])
        checks = c.get("/api/v1/checks", headers=h).json()
        assert [x["check"] for x in checks] == ["plugin/bad", "plugin/meh", "plugin/ok"]
        assert [x["check"] for x in c.get("/api/v1/checks", params={"host": "xs2"},
                                          headers=h).json()] == ["plugin/meh"]
        assert [x["check"] for x in c.get("/api/v1/checks", params={"state": "ok"},
                                          headers=h).json()] == ["plugin/ok"]
        assert c.get("/api/v1/checks", params={"state": "purple"},
                     headers=h).status_code == 422
        assert {x["check"]: x["downtime"] for x in checks}["plugin/bad"] is None
        work = Downtimes(store).schedule("xs1", check="plugin/b*", ends_at=now + 3600)
        covered = {x["check"]: x["downtime"]
                   for x in c.get("/api/v1/checks", headers=h).json()}
        assert covered == {"plugin/bad": work.id, "plugin/meh": None, "plugin/ok": None}

        feed(monitor, [CheckResult("xs1", "snmp/temperature/CPU1 Temp", State.OK, "55 °C",
                                   now, reading=Reading("temperature", "CPU1 Temp", 55.0,
                                                        "°C", crit=98.0))])
        r = c.get("/metrics", headers=h)
        assert r.status_code == 200
        sensor = re.search(r'^poolwarden_sensor_value\{host="xs1",check="snmp/temperature/'
                           r'CPU1 Temp",unit="°C"\} (\S+)$', r.text, re.MULTILINE)
        assert sensor is not None
        assert float(sensor.group(1)) == 55.0
        assert r.headers["content-type"].startswith("text/plain")
        values: dict[str, float] = {}
        for line in r.text.splitlines():
            if line.startswith("#"):
                assert re.match(r"^# (HELP|TYPE) poolwarden_[a-z_]+ .+$", line), line
                continue
            assert SAMPLE.match(line), line
            key, value = line.rsplit(" ", 1)
            values[key] = float(value)
        assert values['poolwarden_checks{state="OK"}'] == 2  # plugin/ok and the sensor
        assert values['poolwarden_checks{state="CRITICAL"}'] == 1
        assert values['poolwarden_checks{state="WARNING"}'] == 1
        assert values["poolwarden_incidents_open"] == 2
        assert values["poolwarden_poll_errors_total"] == 0
        assert 'poolwarden_scheduler_lateness_seconds{stat="max"}' in values
        assert 'poolwarden_bus_queue_depth{queue="incidents"}' in values
        assert "# TYPE poolwarden_remediations_total counter" in r.text
