"""Scheduling and cancelling downtimes from the dashboard's host page (SQLite and
PostgreSQL): the form and the Cancel buttons for operators, their roles and CSRF checks."""

from __future__ import annotations

import html
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from test_web_pages import config
from webui import HIDDEN_CSRF, PASSWORD, browser, csrf, login

from poolwarden.api.app import create_app
from poolwarden.api.users import create_user
from poolwarden.store.db import Store, now
from poolwarden.store.downtimes import Downtimes

FORM = 'action="/ui/hosts/xs2/downtimes"'


@pytest.fixture
def app(store: Store) -> FastAPI:
    create_user(store, "vera", "viewer", PASSWORD)
    create_user(store, "otto", "operator", PASSWORD)
    return create_app(None, store, config=config())  # the pages need no monitor


@pytest.fixture
def otto(app: FastAPI) -> Iterator[TestClient]:
    with browser(app) as c:
        login(c, "otto")
        yield c


def test_an_operator_schedules_and_cancels_a_downtime(otto: TestClient, store: Store) -> None:
    page = otto.get("/ui/hosts/xs2").text
    assert "Schedule a downtime" in page
    assert FORM in page
    assert 'name="duration" value="2h"' in page
    assert 'placeholder="every check"' in page
    token = HIDDEN_CSRF.search(page.split(FORM, 1)[1])  # the form carries it
    assert token is not None
    r = otto.post("/ui/hosts/xs2/downtimes",
                  data={"csrf": token.group(1), "duration": " 90m ", "check": "snmp/*",
                        "comment": " new <PSU> "})
    assert (r.status_code, r.headers["location"]) == (303, "/ui/hosts/xs2")
    [work] = Downtimes(store).current()
    assert (work.host, work.check, work.author, work.comment) == (
        "xs2", "snmp/*", "web:otto", "new <PSU>")
    assert work.ends_at - work.starts_at == pytest.approx(5400)
    assert work.starts_at == pytest.approx(now(), abs=30)

    page = otto.get("/ui/hosts/xs2").text
    assert f"#{work.id} active: snmp/*" in page
    assert "by web:otto — new &lt;PSU&gt;" in page
    assert f'action="/ui/downtimes/{work.id}/cancel"' in page
    r = otto.post(f"/ui/downtimes/{work.id}/cancel", data={"csrf": csrf(otto)})
    assert (r.status_code, r.headers["location"]) == (303, "/ui/hosts/xs2")
    assert Downtimes(store).current() == []
    assert Downtimes(store).get(work.id).cancelled_by == "web:otto"
    assert "Scheduled downtimes" not in otto.get("/ui/hosts/xs2").text

    r = otto.post(f"/ui/downtimes/{work.id}/cancel", data={"csrf": csrf(otto)})
    assert r.status_code == 409  # the dashboard's refusal, as for an ack
    assert f"downtime #{work.id} was already cancelled by web:otto" in r.text
    assert otto.post("/ui/downtimes/999999/cancel",
                     data={"csrf": csrf(otto)}).status_code == 404


def test_bad_requests_get_an_error_page(otto: TestClient, store: Store) -> None:
    token = csrf(otto)
    url = "/ui/hosts/xs2/downtimes"
    for duration, message in (("soon", "Bad duration 'soon': give a positive number with a unit"),
                              ("0m", "Bad duration '0m'"),
                              ("400d", "a downtime lasts at most 366 days")):
        r = otto.post(url, data={"csrf": token, "duration": duration})
        assert r.status_code == 400, duration
        assert message in html.unescape(r.text), duration
    r = otto.post("/ui/hosts/nowhere/downtimes", data={"csrf": token, "duration": "2h"})
    assert r.status_code == 404
    assert "no host &#39;nowhere&#39;" in r.text
    assert Downtimes(store).current() == []


def test_a_viewer_sees_the_list_but_cannot_change_it(app: FastAPI, store: Store) -> None:
    work = Downtimes(store).schedule("xs2", ends_at=now() + 3600, author="cli:ann")
    with browser(app) as c:
        login(c, "vera")
        page = c.get("/ui/hosts/xs2").text
        assert f"#{work.id} active: every check" in page
        assert "Schedule a downtime" not in page
        assert FORM not in page
        assert "/cancel" not in page
        token = csrf(c)
        r = c.post("/ui/hosts/xs2/downtimes", data={"csrf": token, "duration": "2h"})
        assert r.status_code == 403
        assert "This needs the operator role (you are viewer)." in r.text
        assert c.post(f"/ui/downtimes/{work.id}/cancel",
                      data={"csrf": token}).status_code == 403
    assert Downtimes(store).current() == [work]


def test_both_actions_need_the_session_token(otto: TestClient, store: Store) -> None:
    work = Downtimes(store).schedule("xs2", ends_at=now() + 3600, author="cli:ann")
    for data in ({}, {"csrf": "wrong"}):
        for url in ("/ui/hosts/xs2/downtimes", f"/ui/downtimes/{work.id}/cancel"):
            r = otto.post(url, data={**data, "duration": "2h"})
            assert r.status_code == 403, (url, data)
            assert "security token is missing or stale" in r.text
    assert Downtimes(store).current() == [work]
