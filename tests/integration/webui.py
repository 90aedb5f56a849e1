"""Helpers for the dashboard tests: a browser-like TestClient and the login dance."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response

from poolwarden.api.web.core import WebState

#: https: the session cookie is Secure, and httpx (like a browser) only sends it there
BASE = "https://testserver"
HIDDEN_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PASSWORD = "correct horse battery staple"


def browser(app: FastAPI, address: str = "testclient") -> TestClient:
    return TestClient(app, base_url=BASE, follow_redirects=False, client=(address, 50000))


def login(c: TestClient, name: str, password: str = PASSWORD, **form: str) -> Response:
    """GET the form (its pre-session token and cookie), then POST it."""
    page = c.get("/ui/login")
    assert page.status_code == 200, page.text
    token = HIDDEN_CSRF.search(page.text)
    assert token is not None
    data = {"name": name, "password": password, "csrf": token.group(1), **form}
    return c.post("/ui/login", data=data)


def csrf(c: TestClient) -> str:
    """The session's CSRF token, as every page carries it (the logout form)."""
    page = c.get("/ui/incidents")
    assert page.status_code == 200, page.text
    found = HIDDEN_CSRF.search(page.text)
    assert found is not None
    return found.group(1)


def web_state(app: FastAPI) -> WebState:
    state: Any = app.state
    web: WebState = state.web
    return web
