"""The dashboard's login, sessions, CSRF and roles, on a real store (SQLite and PostgreSQL).

Browser-like clients (TestClient over https, cookies kept, no redirects followed) against
``create_app``; see ``test_web_pages.py`` for the pages with data in them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text, update
from webui import PASSWORD, browser, csrf, login, web_state

from poolwarden.api.app import create_app
from poolwarden.api.auth import FailureLimiter, create_token
from poolwarden.api.users import (
    create_user,
    hash_password,
    needs_rehash,
    set_disabled,
    set_password,
    set_role,
)
from poolwarden.api.web.sessions import COOKIE, LOGIN_COOKIE
from poolwarden.config.models import Config
from poolwarden.incidents import IncidentManager
from poolwarden.messages import Reading, State, StateChange, StateType
from poolwarden.store.db import Store
from poolwarden.store.models import WebSession, WebUser

NEXT = "/ui/incidents?status=all"


@pytest.fixture
def app(store: Store) -> FastAPI:
    for name, role in (("vera", "viewer"), ("otto", "operator"), ("ada", "admin")):
        create_user(store, name, role, PASSWORD)
    return create_app(None, store, limiter=FailureLimiter(limit=3))


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with browser(app) as c:
        yield c


@pytest.fixture
def incident(store: Store) -> int:
    change = StateChange("xs1", "snmp/temperature/CPU1 Temp", State.OK, State.CRITICAL,
                         StateType.HARD, 3, 3, 1000.0, "CPU1 Temp 101 C", True,
                         reading=Reading("temperature", "CPU1 Temp", 101.0, "C", 85, 98))
    return IncidentManager(store).handle_many([change]).incident_ids[0]


def sessions(store: Store) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(WebSession)) or 0)


def test_login_sets_a_host_only_secure_strict_cookie(store: Store, client: TestClient) -> None:
    r = login(client, "Otto", next=NEXT)  # names are case-insensitive
    assert r.status_code == 303
    assert r.headers["location"] == NEXT
    [cookie] = [h for h in r.headers.get_list("set-cookie") if h.startswith(COOKIE)]
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert flags == {"httponly", "path=/", "samesite=strict", "secure"}  # no Domain, no
    secret = cookie.split(";")[0].split("=", 1)[1]                        # Max-Age
    assert len(secret) >= 43
    assert any(h.startswith(f'{LOGIN_COOKIE}=""') for h in r.headers.get_list("set-cookie"))
    page = client.get(NEXT)
    assert page.status_code == 200
    assert "otto <span class=\"role\">(operator)</span>" in page.text
    with store.session() as s:
        dump = repr(s.execute(text("SELECT * FROM web_session")).all())
        dump += repr(s.execute(text("SELECT * FROM web_user")).all())
    assert secret not in dump  # only its SHA-256 is stored
    assert PASSWORD not in dump


def test_bad_password_and_unknown_user_look_the_same(client: TestClient,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "poolwarden.api")
    bad, unknown = login(client, "otto", "wrong password!"), login(client, "nobody")
    for r in (bad, unknown):
        assert r.status_code == 401
        assert "Wrong user name or password." in r.text
        assert COOKIE not in r.headers.get("set-cookie", "")
    assert client.get("/ui/", follow_redirects=False).status_code == 303
    failures = [m.getMessage() for m in caplog.records if "login failed" in m.getMessage()]
    assert failures == ["dashboard login failed for 'otto' from testclient",
                        "dashboard login failed for 'nobody' from testclient"]
    assert "wrong password!" not in caplog.text
    assert PASSWORD not in caplog.text


def test_a_login_upgrades_a_weaker_hash(store: Store, client: TestClient) -> None:
    weak = hash_password(PASSWORD, log2_n=10)
    with store.session() as s:
        s.execute(update(WebUser).where(WebUser.name == "ada").values(password_hash=weak))
    assert login(client, "ada").status_code == 303
    with store.session() as s:
        stored = s.scalars(select(WebUser.password_hash).where(WebUser.name == "ada")).one()
    assert stored != weak
    assert not needs_rehash(stored)


def test_disabled_users_cannot_log_in(store: Store, client: TestClient) -> None:
    set_disabled(store, "vera")
    assert login(client, "vera").status_code == 401


def test_failed_logins_are_limited_per_address_and_per_name(app: FastAPI) -> None:
    with browser(app, "10.0.0.1") as a, browser(app, "10.0.0.2") as b, \
            browser(app, "10.0.0.3") as c:
        for _ in range(3):
            assert login(a, "otto", "not the password").status_code == 401
        r = login(a, "otto")  # even the right password: not even checked
        assert r.status_code == 429
        assert int(r.headers["Retry-After"]) > 0
        assert "Too many failed logins: wait" in r.text
        assert login(a, "vera").status_code == 429  # the address is limited
        assert login(b, "otto").status_code == 429  # and so is the name, from anywhere
        assert login(b, "vera").status_code == 303  # others log in
        for _ in range(3):
            login(c, "vera", "nope nope nope")
        # The API shares the limiter: this address is refused there too.
        assert c.get("/api/v1/incidents").status_code == 429


@pytest.mark.usefixtures("app")  # its users
def test_behind_a_trusted_proxy_logins_are_limited_per_forwarded_address(store: Store) -> None:
    """Every request comes from the proxy's address: the limit keys on the client it
    forwards for, and an X-Forwarded-For from anybody else is ignored."""
    cfg = Config.model_validate({"api": {"trusted_proxies": ["10.9.0.0/24"]}})
    proxied = create_app(None, store, config=cfg, limiter=FailureLimiter(limit=3))
    proxy = "10.9.0.1"
    with browser(proxied, proxy) as attacker, browser(proxied, proxy) as victim, \
            browser(proxied, "192.0.2.50") as direct:
        attacker.headers["X-Forwarded-For"] = "203.0.113.7"
        victim.headers["X-Forwarded-For"] = "198.51.100.2, 10.9.0.2"  # two proxies
        for name in ("nobody1", "nobody2", "nobody3"):
            assert login(attacker, name, "guess").status_code == 401
        assert login(attacker, "otto").status_code == 429
        # what the attacker writes in front of the proxy's entry changes nothing
        attacker.headers["X-Forwarded-For"] = "198.51.100.99, 203.0.113.7"
        assert login(attacker, "otto").status_code == 429
        assert attacker.get("/api/v1/incidents").status_code == 429  # the API's limit too
        assert login(victim, "vera").status_code == 303  # the same proxy, another client

        # not a trusted proxy: its header is ignored, its own address is limited
        for forged in ("198.51.100.11", "198.51.100.12", "198.51.100.13"):
            direct.headers["X-Forwarded-For"] = forged
            assert login(direct, "nobody4", "guess").status_code == 401
        direct.headers["X-Forwarded-For"] = "198.51.100.2"
        assert login(direct, "otto").status_code == 429
    with store.session() as s:
        assert s.scalars(select(WebSession.address)).all() == ["198.51.100.2"]


def test_login_form_needs_its_own_token_and_origin(client: TestClient) -> None:
    client.get("/ui/login")
    r = client.post("/ui/login", data={"name": "otto", "password": PASSWORD, "csrf": "x"})
    assert r.status_code == 403
    assert "expired or did not come from here" in r.text
    client.cookies.clear()
    r = client.post("/ui/login", data={"name": "otto", "password": PASSWORD, "csrf": ""})
    assert r.status_code == 403  # no cookie, no token: login CSRF refused
    page = client.get("/ui/login")
    token = page.text.split('name="csrf" value="')[1].split('"')[0]
    r = client.post("/ui/login", data={"name": "otto", "password": PASSWORD, "csrf": token},
                    headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    assert "Cross-origin" in r.text


def test_logout_ends_the_session_on_the_server(store: Store, client: TestClient) -> None:
    login(client, "otto")
    secret = client.cookies[COOKIE]
    assert sessions(store) == 1
    r = client.post("/ui/logout", data={"csrf": csrf(client)})
    assert (r.status_code, r.headers["location"]) == (303, "/ui/login")
    assert COOKIE not in client.cookies
    assert sessions(store) == 0
    client.cookies.set(COOKIE, secret, domain="testserver")  # a copied cookie is dead too
    r = client.get("/ui/")
    assert (r.status_code, r.headers["location"]) == (303, "/ui/login?next=%2Fui%2F")


def test_logout_needs_the_csrf_token(client: TestClient) -> None:
    login(client, "otto")
    assert client.post("/ui/logout", data={}).status_code == 403
    assert client.get("/ui/").status_code == 200


def test_sessions_expire_when_idle_and_at_their_maximum(store: Store, app: FastAPI,
                                                        client: TestClient) -> None:
    t = [1_000_000.0]
    client.get("/ui/login")
    web_state(app).sessions.clock = lambda: t[0]
    idle, maximum = 8 * 3600.0, 7 * 86400.0  # the configuration's defaults
    login(client, "vera")
    t[0] += idle - 5
    assert client.get("/ui/").status_code == 200  # activity: the idle time restarts
    t[0] += idle - 5
    assert client.get("/ui/").status_code == 200
    t[0] += idle + 1
    r = client.get("/ui/hosts")
    assert (r.status_code, r.headers["location"]) == (303, "/ui/login?next=%2Fui%2Fhosts")
    assert sessions(store) == 0  # the expired row is gone

    login(client, "vera")
    start = t[0]
    while t[0] < start + maximum - idle:
        t[0] += idle / 2
        assert client.get("/ui/").status_code == 200
    t[0] = start + maximum + 1
    assert client.get("/ui/").status_code == 303  # active, but past the maximum


def test_live_updates_are_not_activity(app: FastAPI, client: TestClient) -> None:
    t = [1_000_000.0]
    client.get("/ui/login")
    web_state(app).sessions.clock = lambda: t[0]
    login(client, "vera")
    live = {"X-Requested-With": "poolwarden"}
    for _ in range(20):  # a wall screen polling for 10 h
        t[0] += 1800
        r = client.get("/ui/board/rows", headers=live)
        if r.status_code != 200:
            break
    assert r.status_code == 401
    assert r.headers["X-Login"] == "/ui/login"
    assert t[0] - 1_000_000.0 <= 8 * 3600 + 1800


@pytest.mark.parametrize("change", ["disable", "role", "password"])
def test_disabling_or_changing_a_user_ends_their_sessions(store: Store, client: TestClient,
                                                          change: str) -> None:
    login(client, "otto")
    assert client.get("/ui/").status_code == 200
    if change == "disable":
        set_disabled(store, "otto")
    elif change == "role":
        set_role(store, "otto", "viewer")
    else:
        set_password(store, "otto", "another fine password")
    assert client.get("/ui/").status_code == 303


def test_viewers_cannot_acknowledge_operators_can(client: TestClient, incident: int,
                                                  store: Store) -> None:
    login(client, "vera")
    page = client.get(f"/ui/incidents/{incident}")
    assert "Acknowledging needs the operator role (you are viewer)" in page.text
    assert 'action="/ui/incidents/' not in page.text
    r = client.post(f"/ui/incidents/{incident}/ack", data={"csrf": csrf(client)})
    assert r.status_code == 403
    assert "This needs the operator role (you are viewer)." in r.text
    assert IncidentManager(store).get(incident).status == "open"

    client.cookies.clear()
    login(client, "otto")
    r = client.post(f"/ui/incidents/{incident}/ack",
                    data={"csrf": csrf(client), "comment": "fan ordered", "expires_in": "3600",
                          "next": "/ui/?state=problems"})
    assert (r.status_code, r.headers["location"]) == (303, "/ui/?state=problems")
    rec = IncidentManager(store).get(incident)
    assert (rec.status, rec.ack_by, rec.ack_comment) == ("acknowledged", "web:otto",
                                                         "fan ordered")
    assert rec.ack_expires_at is not None
    assert rec.ack_at is not None
    assert 3590 < rec.ack_expires_at - rec.ack_at < 3610
    r = client.post(f"/ui/incidents/{incident}/comment",
                    data={"csrf": csrf(client), "text": "replaced"},
                    headers={"X-CSRF-Token": "ignored when the field is right"})
    assert r.status_code == 303
    page = client.get(f"/ui/incidents/{incident}").text
    assert "acknowledged</strong> by web:otto" in page
    assert "replaced" in page


def test_state_changes_need_the_session_token_and_same_origin(client: TestClient,
                                                             incident: int) -> None:
    login(client, "otto")
    token = csrf(client)
    url = f"/ui/incidents/{incident}/ack"
    for data, headers in (({}, {}), ({"csrf": "wrong"}, {}), ({"csrf": token[:-1]}, {}),
                          ({}, {"X-CSRF-Token": "wrong"})):
        r = client.post(url, data=data, headers=headers)
        assert r.status_code == 403, (data, headers)
        assert "security token is missing or stale" in r.text
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Origin": "null"}):
        r = client.post(url, data={"csrf": token}, headers=headers)
        assert r.status_code == 403, headers
    r = client.post(url, headers={"X-CSRF-Token": token, "Origin": "https://testserver",
                                  "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 303  # the header works (what a script sends)


def test_a_token_from_another_session_is_refused(app: FastAPI, client: TestClient,
                                                 incident: int) -> None:
    login(client, "otto")
    with browser(app) as other:
        login(other, "ada")
        theirs = csrf(other)
    r = client.post(f"/ui/incidents/{incident}/ack", data={"csrf": theirs})
    assert r.status_code == 403


def test_api_tokens_do_not_open_the_dashboard(store: Store, client: TestClient) -> None:
    token = create_token(store, "admin", "ci")
    r = client.get("/ui/", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 303
    login(client, "ada")  # and a session does not open the API
    assert client.get("/api/v1/incidents").status_code == 401


def test_every_ui_response_carries_the_security_headers(client: TestClient) -> None:
    login(client, "vera")
    for path in ("/ui/login", "/ui/", "/ui/incidents/999999", "/ui/static/app.js",
                 "/ui/board/rows", "/ui/no/such/page"):
        r = client.get(path)
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp
        assert "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "unsafe" not in csp
        assert r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["Referrer-Policy"] == "same-origin"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Strict-Transport-Security"].startswith("max-age=")
    assert client.get("/ui/incidents/999999").status_code == 404
    unknown = client.get("/ui/no/such/page")
    assert unknown.status_code == 404
    assert "There is no such page." in unknown.text
    assert unknown.headers["X-Frame-Options"] == "DENY"
    assert client.get("/ui/").headers["Cache-Control"] == "no-store"
    assert "max-age" in client.get("/ui/static/style.css").headers["Cache-Control"]
    assert client.get("/ui/static/..%2Fcore.py").status_code == 404
    assert client.get("/", follow_redirects=False).headers["location"] == "/ui/"
