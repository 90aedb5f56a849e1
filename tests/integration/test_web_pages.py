"""The dashboard's pages with real data: a Monitor fed check results, incidents and
notifications in the store (SQLite and PostgreSQL), and the lab's XenAPI pool."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from webui import PASSWORD, browser, login

from poolwarden.api.app import create_app
from poolwarden.api.context import ApiContext
from poolwarden.api.users import create_user
from poolwarden.config.models import Config
from poolwarden.incidents import IncidentManager
from poolwarden.lab import Lab
from poolwarden.messages import CheckResult, Reading, State, StateChange, StateType
from poolwarden.service import Monitor
from poolwarden.store.db import Store
from poolwarden.store.downtimes import Downtimes
from poolwarden.store.models import Notification

CPU = "snmp/temperature/CPU1 Temp"
ROW = re.compile(r'<tr class="r-(\w+)[^"]*">\s*<td>.*?</td>\s*<td><a href="/ui/hosts/([^"]+)">'
                 r".*?</a></td>\s*<td>[^<]*</td>\s*<td><a [^>]+>([^<]+)</a>", re.DOTALL)


def config(lab: Lab | None = None, hosts: int = 3) -> Config:
    pools: list[dict[str, Any]] = [{"name": "east", "hosts": [{"name": f"xs{i}"}
                                                              for i in range(1, hosts + 1)]},
                                   {"name": "west", "hosts": [{"name": "wx1"}]}]
    if lab is not None:
        pools = [{"name": "lab-pool", "hosts": [{"name": n} for n in sorted(lab.urls)],
                  "xapi": {"url": lab.urls[lab.master_name], "user": "root",
                           "password": "lab"}}]
    return Config.model_validate({"pools": pools})


def feed(monitor: Monitor, results: list[CheckResult]) -> None:
    asyncio.run(monitor._evaluate(results))  # what one poll round delivers on the bus


def hot(host: str, value: float, ts: float, state: State = State.CRITICAL) -> CheckResult:
    return CheckResult(host, CPU, state, f"CPU1 Temp {value} C", ts,
                       reading=Reading("temperature", "CPU1 Temp", value, "C", 85.0, 98.0,
                                       None, 3.0, "criticalUpper"))


def rows(html: str) -> list[tuple[str, str, str]]:
    """(state, host, check) of the board's rows, in order."""
    return [(s, h, c) for s, h, c in ROW.findall(html)]


@pytest.fixture
def monitor(store: Store) -> Monitor:
    mon = Monitor(config(), store)
    now = time.time()
    results = [CheckResult(f"xs{i % 3 + 1}", f"plugin/check-{i:03d}", State.OK, f"fine {i}",
                           now) for i in range(447)]
    results += [CheckResult("xs2", "plugin/ssh", State.WARNING, "ssh slow <b>", now),
                CheckResult("wx1", "plugin/disk", State.UNKNOWN, "no answer", now)]
    for k in range(3):  # three rounds: SOFT 1, 2, then HARD
        results.append(hot("xs1", 101.0 + k, now - 20 + k * 10))
        feed(mon, results)
        results = results[-1:] if k < 2 else []
    return mon


@pytest.fixture
def app(store: Store, monitor: Monitor) -> FastAPI:
    create_user(store, "vera", "viewer", PASSWORD)
    return create_app(monitor, store)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with browser(app) as c:
        login(c, "vera")
        yield c


def test_board_problems_first_with_counts_and_pages(client: TestClient) -> None:
    page = client.get("/ui/")
    assert page.status_code == 200
    found = rows(page.text)
    assert len(found) == 200  # one page of 450
    assert found[:3] == [("critical", "xs1", CPU), ("warning", "xs2", "plugin/ssh"),
                         ("unknown", "wx1", "plugin/disk")]
    assert "<b>3</b> problems" in page.text
    assert "<b>447</b> OK" in page.text
    assert "Checks 1–200 of 450" in page.text
    assert "ssh slow &lt;b&gt;" in page.text  # outputs are escaped
    assert 'data-live="/ui/board/rows"' in page.text
    second = client.get("/ui/", params={"page": 3})
    assert "Checks 401–450 of 450" in second.text
    assert len(rows(second.text)) == 50
    assert 'rel="prev"' in second.text
    assert 'rel="next"' not in second.text


def test_board_filters(client: TestClient) -> None:
    page = client.get("/ui/", params={"state": "problems"}).text
    assert [r[2] for r in rows(page)] == [CPU, "plugin/ssh", "plugin/disk"]
    assert 'data-live="/ui/board/rows?state=problems"' in page
    assert [r[1] for r in rows(client.get("/ui/", params={"pool": "west"}).text)] == ["wx1"]
    only = rows(client.get("/ui/", params={"host": "xs2", "state": "WARNING"}).text)
    assert only == [("warning", "xs2", "plugin/ssh")]
    page = client.get("/ui/", params={"host": "xs2"}).text
    assert "Checks 1–150 of 150 matching (450 in all)" in page
    assert rows(client.get("/ui/", params={"q": "fine 99"}).text) == [
        ("ok", "xs1", "plugin/check-099")]  # the text matches outputs too
    assert len(rows(client.get("/ui/", params={"q": "CHECK-04"}).text)) == 10
    assert rows(client.get("/ui/", params={"q": "nothing like it"}).text) == []
    assert "No check matches." in client.get("/ui/", params={"q": "nothing like it"}).text
    bad = client.get("/ui/", params={"state": "purple", "page": "many"})
    assert bad.status_code == 200  # a malformed filter is ignored, not an error


def test_board_marks_acknowledged_problems_and_the_fragment_follows(
        client: TestClient, store: Store) -> None:
    incidents = IncidentManager(store)
    iid = incidents.open_id("xs1", CPU) or incidents.handle_many([StateChange(
        "xs1", CPU, State.OK, State.CRITICAL, StateType.HARD, 3, 3, time.time(), "hot",
        True)]).incident_ids[0]
    live = {"X-Requested-With": "poolwarden"}
    frag = client.get("/ui/board/rows", params={"state": "problems"}, headers=live)
    assert frag.status_code == 200
    assert f">#{iid} open</a>" in frag.text
    assert "<b>3</b> unhandled" in frag.text
    assert "<form" not in frag.text
    assert "<html" not in frag.text
    incidents.acknowledge(iid, "web:otto", "on it")
    frag = client.get("/ui/board/rows", params={"state": "problems"}, headers=live).text
    assert f"#{iid} ✓ acknowledged by web:otto" in frag
    assert "<b>2</b> unhandled" in frag
    assert [r[2] for r in rows(frag)] == ["plugin/ssh", "plugin/disk", CPU]  # handled last
    assert len(rows(client.get("/ui/board/rows", params={"state": "unhandled"}).text)) == 2


def test_a_scheduled_downtime_marks_the_board_and_the_host_page(
        client: TestClient, store: Store) -> None:
    work = Downtimes(store).schedule("xs2", ends_at=time.time() + 3600, author="cli:ann",
                                     comment="new <PSU>")
    frag = client.get("/ui/board/rows", params={"state": "problems"},
                      headers={"X-Requested-With": "poolwarden"}).text
    assert f'title="downtime #{work.id} by cli:ann until' in frag
    assert "new &lt;PSU&gt;" in frag
    assert "<b>2</b> unhandled" in frag
    assert [r[2] for r in rows(frag)] == [CPU, "plugin/disk", "plugin/ssh"]  # handled last
    host = client.get("/ui/hosts/xs2").text
    assert "Scheduled downtimes" in host
    assert f"#{work.id} active: every check" in host
    assert "Scheduled downtimes" not in client.get("/ui/hosts/xs1").text


def test_board_without_a_monitor_says_so(store: Store) -> None:
    create_user(store, "otto", "operator", PASSWORD)
    with browser(create_app(None, store)) as c:
        login(c, "otto")
        page = c.get("/ui/").text
    assert "No monitor runs in this process" in page
    assert "data-live" not in page


def test_host_page_with_readings_charts_and_incidents(client: TestClient, monitor: Monitor,
                                                      store: Store) -> None:
    now = time.time()
    feed(monitor, [hot("xs1", 99.0 + k / 10, now - 600 + k * 10) for k in range(50)])
    IncidentManager(store).handle_many([StateChange(
        "xs1", CPU, State.OK, State.CRITICAL, StateType.HARD, 3, 3, now, "hot", True)])
    page = client.get("/ui/hosts/xs1")
    assert page.status_code == 200
    html = page.text
    chart = re.search(r'<section class="chart-box".*?</section>', html, re.DOTALL)
    assert chart is not None  # the worst check with readings is charted by default
    assert f"<h2 id=\"chart-title\">{CPU}</h2>" in chart.group(0)
    assert '<line class="thr thr-critical"' in chart.group(0)
    assert "critical ≥ 98" in chart.group(0)
    assert re.search(r'<path class="series" d="M[\d.]+,[\d.]+( L[\d.]+,[\d.]+){20,}"',
                     chart.group(0))
    assert 'class="chart spark"' in html  # the sparkline in the check's row
    assert "critical ≥ 98, warning ≥ 85" not in html
    assert "warning ≥ 85, critical ≥ 98, critical ≤ 3" in html  # the thresholds in words
    assert "criticalUpper" in html
    assert "Open incidents" in html
    assert f"{CPU}</a> — open" in html
    other = client.get("/ui/hosts/xs1", params={"check": "plugin/check-000", "range": 21600})
    assert other.status_code == 200
    assert "<strong>6 h</strong>" in other.text
    assert client.get("/ui/hosts/xs1", params={"check": "nope"}).status_code == 404
    r = client.get("/ui/hosts/nowhere")
    assert r.status_code == 404
    assert "no host &#39;nowhere&#39;" in r.text  # escaped
    assert client.get("/ui/hosts").status_code == 200
    assert "xs1" in client.get("/ui/hosts").text


def test_incident_pages(client: TestClient, store: Store) -> None:
    manager = IncidentManager(store)
    [a, b] = manager.handle_many([
        StateChange("xs1", CPU, State.OK, State.CRITICAL, StateType.HARD, 3, 3, 1000.0,
                    "hot", True),
        StateChange("xs2", "plugin/ssh", State.OK, State.WARNING, StateType.HARD, 3, 3,
                    1000.0, "slow", True)]).incident_ids
    manager.acknowledge(b, "web:otto", "looking")
    page = client.get("/ui/incidents").text
    assert page.index(f">#{b}</a>") < page.index(f">#{a}</a>")  # newest first
    assert "acknowledged by web:otto" in page
    assert f">#{a}</a>" not in client.get("/ui/incidents", params={"status": "acknowledged"}
                                          ).text
    assert f">#{b}</a>" not in client.get("/ui/incidents", params={"severity": "critical"}
                                          ).text
    detail = client.get(f"/ui/incidents/{b}").text
    assert "looking" in detail
    assert "web:otto" in detail
    assert re.search(r"<td>opened</td><td>poolwarden</td>", detail)


def test_notification_log(client: TestClient, store: Store) -> None:
    with store.session() as s:
        for i in range(105):
            s.add(Notification(key=f"k{i}", receiver="oncall", channel="mailto://mx/?to=x",
                               severity="critical" if i % 2 else "warning",
                               subject=f"[CRITICAL] message {i}", body="…",
                               status="failed" if i == 104 else "sent", attempts=1,
                               error="connection refused" if i == 104 else "",
                               created_at=1000.0 + i, sent_at=None if i == 104 else 1001.0 + i))
    page = client.get("/ui/notifications").text
    assert page.index("message 104") < page.index("message 103")  # newest first
    assert "connection refused" in page
    assert "message 4<" not in page  # 100 per page
    assert 'href="/ui/notifications?page=2" rel="next"' in page
    older = client.get("/ui/notifications", params={"page": 2}).text
    assert "message 4<" in older
    assert "message 104" not in older
    failed = client.get("/ui/notifications", params={"status": "failed"}).text
    assert "message 104" in failed
    assert "message 103" not in failed


def test_pool_page_shows_master_vms_and_the_remediation(lab: Lab, store: Store) -> None:
    create_user(store, "otto", "operator", PASSWORD)
    app = create_app(Monitor(config(lab), store), store)
    ctx: ApiContext = app.state.ctx
    asyncio.run(ctx.ops.refresh_pool("lab-pool"))
    with browser(app) as c:
        login(c, "otto")
        page = c.get("/ui/pools/lab-pool").text
        assert re.search(r'<a href="/ui/hosts/xstest1">xstest1</a></td>\s*'
                         r"<td><strong>master</strong>", page)
        assert "<li>web-01</li>" in page
        assert "No remediation in this pool yet." in page
        assert "Halted VMs: win-template-builder" in page
        done = asyncio.run(ctx.ops.maintenance("xstest3", "web:otto", wait=True))
        assert done["status"] == "done"
        page = c.get("/ui/pools/lab-pool").text
        assert "maintenance of <a href=\"/ui/hosts/xstest3\">xstest3</a>" in page
        assert "<strong>done</strong>" in page
        layout = re.search(r'<table class="grid layout">.*?</table>', page, re.DOTALL)
        assert layout is not None
        x3 = re.search(r"<th scope=\"row\">xstest3</th>\s*<td>([^<]*)</td>\s*<td>([^<]*)"
                       r"</td>\s*<td>([^<]*)</td>", layout.group(0))
        assert x3 is not None
        before, after, now = x3.groups()
        assert before != "—"
        assert after == "—"
        assert now == "—"
        assert "no (maintenance)" in page
        assert "pools" in c.get("/ui/pools").text.lower()
        assert c.get("/ui/pools/nope").status_code == 404
