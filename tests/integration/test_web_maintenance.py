"""Maintenance from the dashboard, on the lab: the host page's operator form plans it (a
dry run), the plan page's Confirm carries it out, leaving maintenance likewise; an
infeasible plan has no Confirm, a busy pool is a 409 page, viewers get neither."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

from fastapi import FastAPI
from fastapi.testclient import TestClient
from test_web_pages import config
from webui import PASSWORD, browser, csrf, login

from poolwarden.api.app import create_app
from poolwarden.api.context import ApiContext
from poolwarden.api.users import create_user
from poolwarden.lab import Lab
from poolwarden.service import Monitor
from poolwarden.store.db import Store
from poolwarden.store.lease import StoreLease


def lab_app(lab: Lab, store: Store) -> FastAPI:
    create_user(store, "otto", "operator", PASSWORD)
    create_user(store, "vera", "viewer", PASSWORD)
    app = create_app(Monitor(config(lab), store), store)
    ctx: ApiContext = app.state.ctx
    asyncio.run(ctx.ops.refresh_pool("lab-pool"))  # the host page knows "enabled"
    return app


def until(what: Callable[[], bool], seconds: float = 8.0) -> None:
    deadline = time.monotonic() + seconds
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def plan(c: TestClient, host: str, goal: str, **flags: str) -> str:
    page = c.post(f"/ui/hosts/{host}/plan", data={"csrf": csrf(c), "goal": goal, **flags})
    assert page.status_code == 200, page.text
    return page.text


def run(c: TestClient, host: str, goal: str, **flags: str) -> int:
    done = c.post(f"/ui/hosts/{host}/run", data={"csrf": csrf(c), "goal": goal, **flags})
    if done.status_code == 303:
        assert done.headers["location"] == "/ui/pools/lab-pool"
    return done.status_code


def test_operator_plans_confirms_then_leaves_maintenance(lab: Lab, store: Store) -> None:
    layout = lab.sim.layout()
    with browser(lab_app(lab, store)) as c:
        login(c, "otto")
        host = c.get("/ui/hosts/xstest3").text
        assert "Plan maintenance…" in host
        assert "Plan leaving maintenance…" not in host

        page = plan(c, "xstest3", "maintenance")
        assert "Maintenance of xstest3" in page
        assert "(dry run, by web:otto)" in page
        assert re.search(r"<ol class=\"steps\">\s*<li>disable xstest3", page)
        assert ">Confirm</button>" in page
        assert 'name="goal" value="maintenance"' in page
        assert "Cancel</a>" in page
        assert "web-02" in page  # VMs per host after the plan
        assert lab.sim.hosts()["xstest3"].enabled  # a plan changes nothing

        assert run(c, "xstest3", "maintenance") == 303
        until(lambda: "Plan leaving maintenance…" in c.get("/ui/hosts/xstest3").text)
        assert not lab.sim.hosts()["xstest3"].enabled

        page = plan(c, "xstest3", "exit_maintenance", restore="true")
        assert "Leaving maintenance of xstest3, bringing its VMs back" in page
        assert ">Confirm</button>" in page
        assert 'name="restore" value="true"' in page
        assert run(c, "xstest3", "exit_maintenance", restore="true") == 303
        until(lambda: "Plan maintenance…" in c.get("/ui/hosts/xstest3").text)
    assert lab.sim.hosts()["xstest3"].enabled
    assert sorted(lab.sim.layout()["xstest3"]) == sorted(layout["xstest3"])


def test_infeasible_plan_has_no_confirm_and_a_busy_pool_is_409(lab: Lab,
                                                               store: Store) -> None:
    with browser(lab_app(lab, store)) as c:
        login(c, "otto")
        page = plan(c, "xstest2", "maintenance")  # db-local is on local storage
        assert "<strong>no</strong>: nothing will be changed" in page
        assert re.search(r'<ul class="blockers">\s*<li>.*db-local', page)
        assert "Confirm" not in page
        assert lab.sim.hosts()["xstest2"].enabled

        assert c.post("/ui/hosts/xstest3/plan", data={"csrf": csrf(c), "goal": "x"}
                      ).status_code == 400
        assert c.post("/ui/hosts/nope/plan", data={"csrf": csrf(c), "goal": "maintenance"}
                      ).status_code == 404
        other = StoreLease(store, "pool:lab-pool", holder="elsewhere/1/other")
        other.acquire()
        busy = c.post("/ui/hosts/xstest3/run", data={"csrf": csrf(c), "goal": "maintenance"})
        assert busy.status_code == 409
        assert "lease pool:lab-pool is held by elsewhere/1/other" in busy.text
        other.release()
    assert lab.sim.hosts()["xstest3"].enabled


def test_viewers_see_no_button_and_are_refused(lab: Lab, store: Store) -> None:
    app = lab_app(lab, store)
    with browser(app) as c:
        login(c, "vera")
        assert "Plan maintenance" not in c.get("/ui/hosts/xstest3").text
        for action in ("plan", "run"):
            refused = c.post(f"/ui/hosts/xstest3/{action}",
                             data={"csrf": csrf(c), "goal": "maintenance"})
            assert refused.status_code == 403
            assert "needs the operator role" in refused.text
    with browser(app) as c:
        login(c, "otto")
        no_token = c.post("/ui/hosts/xstest3/plan", data={"goal": "maintenance"})
        assert no_token.status_code == 403
        assert "security token" in no_token.text
    assert lab.sim.hosts()["xstest3"].enabled
