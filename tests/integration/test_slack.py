"""The Slack endpoints on real components: signed requests, the lab, sshd, a receiver.

Requests are signed as Slack signs them (``v0`` HMAC over the raw body); delayed replies
go to a local :class:`WebhookSink` standing in for Slack's ``response_url``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from poolwarden.api import slack as slack_api
from poolwarden.api.app import create_app
from poolwarden.api.auth import FailureLimiter
from poolwarden.chat import render
from poolwarden.chat.commands import Maintenance, sign_confirmation
from poolwarden.chat.slack import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from poolwarden.config.models import Config
from poolwarden.incidents import IncidentManager
from poolwarden.lab import Lab
from poolwarden.messages import CheckResult, Reading, State, StateChange, StateType
from poolwarden.notify.sinks import Hook, WebhookSink
from poolwarden.service import Monitor
from poolwarden.store.db import Store
from poolwarden.store.models import Remediation, ScriptRun, UsedConfirmation
from sshd_server import Sshd

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
VIEWER, OPERATOR, OTHER_OP, STRANGER = "UVIEW1", "UOPER1", "UOPER2", "USTRANGE"
TEAM = "T1"
HOSTS = ("xstest1", "xstest2", "xstest3")


@pytest.fixture(autouse=True)
def patient(monkeypatch: pytest.MonkeyPatch) -> None:
    """A loaded test machine must not turn an immediate answer into a delayed one; the
    tests of delayed answers shorten it again."""
    monkeypatch.setattr(slack_api, "QUICK", 10.0)


@pytest.fixture
def receiver() -> Iterator[WebhookSink]:
    with WebhookSink() as sink:
        yield sink


def prefix(sink: WebhookSink) -> str:
    return f"http://127.0.0.1:{sink.port}/slack/"


def config(sink: WebhookSink, *, lab: Lab | None = None, sshd: Sshd | None = None,
           **slack: Any) -> Config:
    pool: dict[str, Any] = {"name": "lab-pool", "hosts": [
        {"name": h, "address": "127.0.0.1", "ssh_port": sshd.port if sshd else None}
        for h in HOSTS]}
    if lab is not None:
        pool["xapi"] = {"url": lab.urls[lab.master_name], "password": "lab"}
    doc: dict[str, Any] = {"store": {"url": "sqlite://"}, "pools": [pool], "chat": {"slack": {
        "signing_secret": SECRET, "teams": [TEAM], "response_url_prefix": prefix(sink),
        "users": {VIEWER: "viewer", OPERATOR: "operator", OTHER_OP: "operator"}, **slack}}}
    if sshd is not None:
        doc["scripts"] = {"directory": str(sshd.scripts), "timeout": "20s",
                          "ssh": {"user": "root", "key_file": str(sshd.key_file),
                                  "known_hosts": str(sshd.known_hosts)}}
    return Config.model_validate(doc)


def signed(client: TestClient, path: str, body: bytes, *, secret: str = SECRET,
           ts: str | None = None, sig: str | None = None) -> httpx.Response:
    ts = str(int(time.time())) if ts is None else ts
    headers = {"Content-Type": "application/x-www-form-urlencoded", TIMESTAMP_HEADER: ts,
               SIGNATURE_HEADER: sig if sig is not None else sign(secret, ts, body)}
    return client.post(path, content=body, headers=headers)


def command(client: TestClient, text: str, sink: WebhookSink, *, user: str = OPERATOR,
            team: str = TEAM, slash: str = "/poolwarden", url: str | None = None,
            ) -> dict[str, Any]:
    body = urlencode({
        "token": "deprecated", "team_id": team, "channel_id": "C1", "user_id": user,
        "user_name": f"name-of-{user.lower()}", "command": slash, "text": text,
        "response_url": url or prefix(sink) + "commands/1", "trigger_id": "1.2.3"}).encode()
    r = signed(client, "/chat/slack/commands", body)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    assert doc["response_type"] == "ephemeral"
    return doc


def click(client: TestClient, action_id: str, value: str, sink: WebhookSink, *,
          user: str = OPERATOR) -> dict[str, Any]:
    payload = {"type": "block_actions", "user": {"id": user, "username": "x"},
               "team": {"id": TEAM}, "response_url": prefix(sink) + "actions/1",
               "actions": [{"type": "button", "action_id": action_id, "value": value}]}
    r = signed(client, "/chat/slack/interactive",
               urlencode({"payload": json.dumps(payload)}).encode())
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def text_of(msg: dict[str, Any]) -> str:
    return "\n".join([msg["text"], *(b["text"]["text"] for b in msg.get("blocks", [])
                                     if b["type"] == "section")])


def change(host: str, check: str, new: State) -> StateChange:
    return StateChange(host=host, check=check, old_state=State.OK, new_state=new,
                       state_type=StateType.HARD, attempt=3, max_attempts=3, ts=time.time(),
                       output=f"{check} is {new.name}", hard_change=True,
                       reading=Reading("temperature", check, 80.0, "C", 70.0, 90.0))


# --- the door ------------------------------------------------------------------------------


def test_without_slack_configured_the_routes_do_not_exist(store: Store) -> None:
    with TestClient(create_app(None, store)) as client:
        for path in ("/chat/slack/commands", "/chat/slack/interactive"):
            assert signed(client, path, b"command=%2Fpw").status_code == 404


def test_wrongly_signed_requests_are_refused_and_rate_limited(
        store: Store, receiver: WebhookSink) -> None:
    app = create_app(None, store, config=config(receiver), limiter=FailureLimiter(limit=6))
    good = urlencode({"command": "/pw", "text": "help", "user_id": VIEWER,
                      "team_id": TEAM}).encode()
    old = str(int(time.time()) - 301)
    with TestClient(app) as client:
        assert signed(client, "/chat/slack/commands", good).status_code == 200
        refused = [
            signed(client, "/chat/slack/commands", good, secret="not-the-secret"),
            signed(client, "/chat/slack/commands", good + b"&x=1",
                   sig=sign(SECRET, str(int(time.time())), good)),  # tampered body
            signed(client, "/chat/slack/commands", good, ts=old),  # replayed later
            signed(client, "/chat/slack/commands", good, sig="v0=nothex"),
            client.post("/chat/slack/commands", content=good),  # not signed at all
            signed(client, "/chat/slack/interactive", b"payload=%7B%7D", secret="x"),
        ]
        assert [r.status_code for r in refused] == [401] * 6
        assert all(SECRET not in r.text for r in refused)
        r = signed(client, "/chat/slack/commands", good)
        assert r.status_code == 429  # even correctly signed, until the window passes
        assert int(r.headers["Retry-After"]) > 0
    with TestClient(create_app(None, store, config=config(receiver))) as client:
        big = good + b"&pad=" + b"x" * 70_000
        assert signed(client, "/chat/slack/commands", big).status_code == 413
    assert receiver.received == []


def test_unknown_users_and_other_workspaces_are_refused(store: Store,
                                                        receiver: WebhookSink) -> None:
    with TestClient(create_app(None, store, config=config(receiver))) as client:
        for user, team in ((STRANGER, TEAM), (OPERATOR, "T2")):
            msg = command(client, "status", receiver, user=user, team=team)
            assert "not allowed" in text_of(msg)
        assert "viewer" in text_of(command(client, "help", receiver, user=VIEWER))
        assert "unknown command" in text_of(command(client, "reboot xstest1", receiver))


# --- status and ack ------------------------------------------------------------------------


def test_status_of_a_host_from_the_monitor(store: Store, receiver: WebhookSink) -> None:
    cfg = config(receiver)
    monitor = Monitor(cfg, store)
    now = time.time()
    asyncio.run(monitor._evaluate([  # what a poll round delivers on the bus
        CheckResult("xstest1", "plugin/ok", State.OK, "fine", now),
        CheckResult("xstest1", "snmp/temperature/CPU1", State.CRITICAL, "<!channel> 97 C",
                    now)]))
    [iid] = monitor.incidents.handle_many(
        [change("xstest1", "snmp/temperature/CPU1", State.CRITICAL)]).incident_ids
    with TestClient(create_app(monitor, store, config=cfg)) as client:
        msg = command(client, "status xstest1", receiver, user=VIEWER)
        text = text_of(msg)
        assert "*xstest1* (pool lab-pool) — CRITICAL" in text
        assert "snmp/temperature/CPU1" in text
        assert f"#{iid} critical" in text
        assert "<!channel>" not in json.dumps(msg)  # escaped, never a channel ping
        assert "&lt;!channel&gt; 97 C" in text
        overview = text_of(command(client, "status", receiver, user=VIEWER))
        assert overview.index("xstest1") < overview.index("xstest2")  # worst first
        assert "no host or pool named 'nope'" in text_of(
            command(client, "status nope", receiver, user=VIEWER))


def test_status_of_a_pool_from_the_lab(store: Store, receiver: WebhookSink, lab: Lab) -> None:
    app = create_app(None, store, config=config(receiver, lab=lab))
    with TestClient(app) as client:
        # never read: the command reads the pool itself (within Slack's 3 s)
        text = text_of(command(client, "status lab-pool", receiver, user=VIEWER))
        assert "*pool lab-pool* — master xstest1" in text
        assert "• *xstest3* 2 VMs: build-agent, web-02" in text
        assert "halted: win-template-builder" in text
        lab.sim.set_live("xstest2", False)
        asyncio.run(app.state.ctx.ops.refresh_pool("lab-pool"))
        assert "*xstest2* 3 VMs · *not live*" in text_of(
            command(client, "status #lab-pool", receiver, user=VIEWER))


def test_ack_by_an_operator_not_by_a_viewer(store: Store, receiver: WebhookSink) -> None:
    [iid] = IncidentManager(store).handle_many(
        [change("xstest1", "snmp/temperature/CPU1", State.CRITICAL)]).incident_ids
    with TestClient(create_app(None, store, config=config(receiver))) as client:
        msg = command(client, f"ack {iid} looking", receiver, user=VIEWER)
        assert "needs the operator role (you have viewer)" in text_of(msg)
        assert IncidentManager(store).get(iid).status == "open"

        msg = command(client, f"ack {iid} <!channel> fan ordered & on its way", receiver)
        assert f"incident #{iid}" in text_of(msg)
        assert "<!channel>" not in json.dumps(msg)
        incident = IncidentManager(store).get(iid)
        assert incident.status == "acknowledged"
        assert incident.ack_by == f"slack:{OPERATOR} (name-of-{OPERATOR.lower()})"
        assert incident.ack_comment == "<!channel> fan ordered & on its way"
        assert incident.events[-1].author == incident.ack_by
        assert "no incident" in text_of(command(client, "ack 999999", receiver)).lower()
    assert receiver.received == []  # all answered at once


# --- maintenance ---------------------------------------------------------------------------


def _buttons(msg: dict[str, Any]) -> dict[str, str]:
    return {e["action_id"]: e["value"] for b in msg["blocks"] if b["type"] == "actions"
            for e in b["elements"]}


def _hooks(sink: WebhookSink, count: int, timeout: float = 20.0) -> list[Hook]:
    return sink.wait_for(count, timeout=timeout)


def test_maintenance_is_planned_confirmed_and_reported(store: Store, receiver: WebhookSink,
                                                       lab: Lab) -> None:
    app = create_app(None, store, config=config(receiver, lab=lab))
    with TestClient(app) as client:
        dry = command(client, "maintenance xstest2 dry-run", receiver)
        assert "infeasible" in text_of(dry)  # db-local lives on local storage
        assert "db-local" in text_of(dry)
        assert not _buttons(dry)
        assert "needs the operator role" in text_of(
            command(client, "maintenance xstest3", receiver, user=VIEWER))

        ask = command(client, "maintenance xstest3", receiver)
        assert "confirm within 5 minutes" in text_of(ask)
        assert "migrate build-agent from xstest3" in text_of(ask)
        token = _buttons(ask)[render.CONFIRM_ACTION]
        assert lab.sim.hosts()["xstest3"].enabled  # nothing happened yet

        head, body, mac = token.split(".")
        forged = f"{head}.{body}.{mac[::-1]}"
        assert "not valid" in text_of(click(client, render.CONFIRM_ACTION, forged, receiver))
        assert "only the person who asked" in text_of(
            click(client, render.CONFIRM_ACTION, token, receiver, user=OTHER_OP))
        assert "needs the operator role" in text_of(
            click(client, render.CONFIRM_ACTION, token, receiver, user=VIEWER))
        assert "not allowed" in text_of(
            click(client, render.CONFIRM_ACTION, token, receiver, user=STRANGER))
        assert "cancelled by" in text_of(click(client, render.CANCEL_ACTION, "junk",
                                               receiver, user=OTHER_OP))
        assert lab.sim.hosts()["xstest3"].enabled
        refusals = _hooks(receiver, 5)  # every answer to a click is posted to Slack too
        assert all(h.path == "/slack/actions/1" for h in refusals)

        # Cancel voids the confirmation of its message
        cancelled = command(client, "maintenance xstest3", receiver)
        value = _buttons(cancelled)[render.CANCEL_ACTION]
        assert "cancelled by" in text_of(click(client, render.CANCEL_ACTION, value, receiver))
        assert "already confirmed or cancelled" in text_of(
            click(client, render.CONFIRM_ACTION, _buttons(cancelled)[render.CONFIRM_ACTION],
                  receiver))
        assert lab.sim.hosts()["xstest3"].enabled
        _hooks(receiver, 7)
        receiver.clear()

        started = click(client, render.CONFIRM_ACTION, token, receiver)
        assert "maintenance of *xstest3* started" in text_of(started)
        assert started["replace_original"] is True  # the buttons go away
        again = click(client, render.CONFIRM_ACTION, token, receiver)
        assert "already confirmed or cancelled" in text_of(again)

        posted = _hooks(receiver, 3)
        result = next(h.payload for h in posted if "remediation #" in h.payload["text"])
        text = text_of(result)
        assert ": done" in text, text
        assert f"asked by slack:{OPERATOR}" in text
        assert "VMs now:" in text
    flags, layout = lab.sim.hosts(), lab.sim.layout()
    assert not flags["xstest3"].enabled
    assert layout["xstest3"] == []
    assert sorted(layout["xstest1"] + layout["xstest2"]) == sorted(
        ["TST-ubuntu12-1", "TST-ubuntu12-2", "web-01", "db-local", "web-02", "build-agent"])
    with store.session() as s:
        rows = s.scalars(select(Remediation).order_by(Remediation.id)).all()
        assert [(r.host_name, r.dry_run, r.requested_by.split(" ")[0]) for r in rows] == [
            ("xstest2", True, f"slack:{OPERATOR}"), ("xstest3", True, f"slack:{OPERATOR}"),
            ("xstest3", True, f"slack:{OPERATOR}"), ("xstest3", False, f"slack:{OPERATOR}")]


def test_a_slow_plan_is_posted_with_its_buttons(store: Store, receiver: WebhookSink,
                                                lab: Lab,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slack_api, "QUICK", 0.0)
    with TestClient(create_app(None, store, config=config(receiver, lab=lab))) as client:
        now = command(client, "maintenance xstest3", receiver)
        assert "planning the maintenance of xstest3" in text_of(now)
        assert not _buttons(now)
        [hook] = _hooks(receiver, 1)
        assert hook.path == "/slack/commands/1"
        assert "confirm within 5 minutes" in text_of(hook.payload)
        assert render.CONFIRM_ACTION in _buttons(hook.payload)
    assert lab.sim.hosts()["xstest3"].enabled


def test_an_expired_confirmation_is_refused(store: Store, receiver: WebhookSink) -> None:
    token = sign_confirmation(SECRET, Maintenance("xstest3"), OPERATOR, TEAM,
                              time.time() - 301)
    with TestClient(create_app(None, store, config=config(receiver))) as client:
        assert "expired" in text_of(click(client, render.CONFIRM_ACTION, token, receiver))


def test_a_confirmation_is_single_use_across_masters_and_restarts(
        store_url: str, receiver: WebhookSink) -> None:
    """Two masters behind a load balancer share the store: a button used on one is
    refused by the other, and still after a restart."""
    cfg = config(receiver)
    now = time.time()
    confirm = sign_confirmation(SECRET, Maintenance("xstest3"), OPERATOR, TEAM, now)
    cancel = sign_confirmation(SECRET, Maintenance("xstest2"), OPERATOR, TEAM, now)
    used = "already confirmed or cancelled"
    one, two = Store.open(store_url), Store.open(store_url)
    try:
        with TestClient(create_app(None, one, config=cfg)) as a, \
                TestClient(create_app(None, two, config=cfg)) as b:
            assert "cancelled by" in text_of(click(a, render.CANCEL_ACTION, cancel, receiver))
            assert used in text_of(click(b, render.CONFIRM_ACTION, cancel, receiver))
            assert "maintenance of *xstest3* started" in text_of(
                click(b, render.CONFIRM_ACTION, confirm, receiver))
            assert used in text_of(click(a, render.CONFIRM_ACTION, confirm, receiver))
            assert used in text_of(click(b, render.CONFIRM_ACTION, confirm, receiver))
            # it ran once (and failed: this pool has no XAPI), its report posted once
            texts = [h.payload["text"] for h in _hooks(receiver, 6)]
            assert [t for t in texts if "maintenance of xstest3 failed" in t] == [
                ":warning: maintenance of xstest3 failed: pools.lab-pool.xapi: pool "
                "'lab-pool' has no xapi: section: poolwarden cannot act on it"], texts
    finally:
        one.close()
        two.close()
    restarted = Store.open(store_url)
    try:
        with TestClient(create_app(None, restarted, config=cfg)) as c:
            for token in (confirm, cancel):
                assert used in text_of(click(c, render.CONFIRM_ACTION, token, receiver))
    finally:
        restarted.close()


def test_a_confirmation_is_not_taken_when_the_store_fails(
        store: Store, receiver: WebhookSink, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*_args: object) -> bool:
        raise OperationalError("INSERT INTO used_confirmation", {}, Exception("db down"))

    monkeypatch.setattr(slack_api, "first_use", down)
    token = sign_confirmation(SECRET, Maintenance("xstest3"), OPERATOR, TEAM, time.time())
    with TestClient(create_app(None, store, config=config(receiver))) as client:
        msg = click(client, render.CONFIRM_ACTION, token, receiver)
        assert "failed: the store is unavailable: try again" in text_of(msg)
    with store.session() as s:
        assert s.scalars(select(UsedConfirmation)).all() == []  # not used up either
        assert s.scalars(select(Remediation)).all() == []


# --- XESCRIPT ------------------------------------------------------------------------------


def _audit(store: Store) -> list[ScriptRun]:
    with store.session() as s:
        return list(s.scalars(select(ScriptRun).order_by(ScriptRun.id)))


def test_xescript_from_chat(store: Store, receiver: WebhookSink, sshd: Sshd,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(receiver, sshd=sshd)
    with TestClient(create_app(None, store, config=cfg)) as client:
        for text, message in [
            ("XESCRIPT #xstest1 #echo-args web-1 7 on;reboot",
             "argument M: 'on;reboot' is not a valid enum(on|off)"),
            ("XESCRIPT #xstest1 #echo-args $(reboot) 7 on",
             "argument A: '$(reboot)' is not a valid re([a-z0-9-]{1,32})"),
            ("XESCRIPT #xstest1 #escape", "escape"),
            ("XESCRIPT #nowhere #echo-args a 1 on", "no host 'nowhere'"),
        ]:
            msg = command(client, text, receiver)
            assert message in text_of(msg), text_of(msg)
            assert msg["text"].startswith(":no_entry:")
        assert "bad host" in text_of(command(client, "XESCRIPT #xs1;rm #echo-args", receiver))
        assert "needs the operator role" in text_of(
            command(client, "XESCRIPT #xstest1 #echo-args a 1 on", receiver, user=VIEWER))

        ok = command(client, "#xstest1 #echo-args web-1 7 on", receiver, slash="/xescript")
        assert "web-1|7|on|" in text_of(ok)
        assert "exit 0" in text_of(ok)

        # slower than the time allowed: "started" now, the result on response_url
        monkeypatch.setattr(slack_api, "QUICK", 0.2)
        slow = command(client, "XESCRIPT #xstest1 #sleepy 1", receiver)
        assert "started" in text_of(slow)
        [hook] = _hooks(receiver, 1)
        assert "woke" in text_of(hook.payload)
        assert hook.path == "/slack/commands/1"

        # a response_url outside the prefix is never called
        with WebhookSink() as elsewhere:
            slow = command(client, "XESCRIPT #xstest1 #sleepy 1", receiver,
                           url=f"http://127.0.0.1:{elsewhere.port}/slack/commands/1")
            assert "started" in text_of(slow)
            deadline = time.monotonic() + 15
            while len([r for r in _audit(store) if r.script == "sleepy"]) < 2:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            time.sleep(0.3)
            assert elsewhere.received == []
    rows = _audit(store)
    assert {r.status for r in rows[:4]} == {"refused"}
    assert all(r.who == f"slack:{OPERATOR} (name-of-{OPERATOR.lower()})" for r in rows)
    assert [r.status for r in rows[4:]] == ["ok", "ok", "ok"]
