"""Real channels on loopback: apprise → an SMTP server and an HTTP webhook, through the
store's idempotency ledger. Time is a fake clock; the network and the store are real."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from poolwarden.messages import Alert, Message
from poolwarden.notify.config import NotifyConfig
from poolwarden.notify.notifier import Notifier
from poolwarden.notify.sinks import SmtpSink, WebhookSink
from poolwarden.store.db import Store

NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC).timestamp()
NIGHT = datetime(2026, 11, 24, 23, 0, tzinfo=UTC).timestamp()
MORNING = datetime(2026, 11, 25, 7, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def mail() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def pager() -> Iterator[WebhookSink]:
    with WebhookSink() as sink:
        yield sink


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'notify.db'}")
    yield s
    s.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nobody listens there once closed


def make_config(mail: SmtpSink, pager: WebhookSink, **receivers: list[str]) -> NotifyConfig:
    """critical → page (webhook) + e-mail; warning → e-mail (quiet at night); info → log."""
    return NotifyConfig.model_validate({
        "receivers": {"oncall": [pager.url()], "sysadmin": [mail.url("sysadmin@example.com")],
                      "directors": [mail.url("directors@example.com")], **receivers},
        "routes": [
            {"match": {"severity": "critical"}, "receivers": ["oncall", "sysadmin"],
             "escalate_after": "15m", "escalate_to": "directors"},
            {"match": {"severity": "warning"}, "receivers": ["sysadmin"],
             "quiet_hours": "22:00-07:00 UTC"},
        ],
        "send_backoff": "10ms", "send_timeout": "5s", "send_interval": "10ms",
    })


def alert(name: str, severity: str, *, host: str = "xs-a1", firing: bool = True,
          starts: float = NOON, ts: float = NOON, **labels: str) -> Alert:
    return Alert(key=f"{host}|{name}", summary=f"{name} above critical threshold",
                 firing=firing, starts_at=starts, ts=ts, incident_id=42,
                 labels={"severity": severity, "host": host, "pool": "prod-a",
                         "check": f"snmp/temperature/{name}", "kind": "temperature", **labels})


def message(key: str = "remediation-7", severity: str = "critical") -> Message:
    return Message(key=key, severity=severity, subject="xs-a1 evacuated",
                   body="3 VMs moved to xs-a2.", labels={"host": "xs-a1", "pool": "prod-a"},
                   ts=NOON)


def stepper(notifier: Notifier, clock: Clock) -> Callable[..., Awaitable[None]]:
    """``await at(t, *alerts)``: move the clock to NOON + t, submit, tick, deliver."""

    async def at(t: float, *alerts: Alert) -> None:
        clock.now = NOON + t
        await notifier.submit(list(alerts))
        await settle(notifier)

    return at


async def settle(*notifiers: Notifier) -> None:
    """One service tick on every notifier (concurrently), then wait for the deliveries."""
    await asyncio.gather(*(n.tick() for n in notifiers))
    for n in notifiers:
        await n.drain()


def test_critical_pages_and_emails_with_a_readable_message(
        mail: SmtpSink, pager: WebhookSink, sqlite_store: Store) -> None:
    clock = Clock()
    notifier = Notifier(make_config(mail, pager), sqlite_store, clock=clock)

    async def scenario() -> None:
        await notifier.submit([alert("CPU1 Temp", "critical", value="95", unit=" C",
                                     warn="85", crit="90")])
        clock.now = NOON + 29
        await settle(notifier)
        assert (mail.received, pager.received) == ([], [])  # group_wait
        clock.now = NOON + 30 + 12 * 60
        await settle(notifier)
        await notifier.aclose()

    asyncio.run(scenario())
    [email] = mail.received
    assert email.to == ("sysadmin@example.com",)
    assert email.subject == "[CRITICAL] xs-a1: CPU1 Temp above critical threshold"
    for words in ("1 alert(s) firing on host=xs-a1", "where:    host xs-a1, pool prod-a",
                  "check:    snmp/temperature/CPU1 Temp (temperature)",
                  "since:    2026-11-24 12:00:00 UTC (12m 30s ago)",
                  "reading:  95 C (thresholds: warning 85, critical 90)", "incident: #42"):
        assert words in email.body
    [page] = pager.received
    assert page.payload["title"] == email.subject
    assert page.payload["message"].strip() == email.body.strip().replace("\r\n", "\n")
    assert page.payload["type"] == "failure"
    records = notifier.sent()
    assert sorted((r.receiver, r.scheme, r.severity, r.status) for r in records) == [
        ("oncall", "json", "critical", "sent"), ("sysadmin", "mailto", "critical", "sent")]


def test_routing_end_to_end(mail: SmtpSink, pager: WebhookSink, sqlite_store: Store,
                            caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    notifier = Notifier(make_config(mail, pager), sqlite_store, clock=clock)

    async def scenario() -> None:
        await notifier.submit([alert("psu", "critical", host="xs-a1"),
                               alert("fan", "warning", host="xs-a2"),
                               alert("inlet", "info", host="xs-a3")])
        await notifier.submit([alert("inlet", "info", host="xs-a3")])  # unchanged: no 2nd line
        clock.now = NOON + 30
        await settle(notifier)
        await notifier.aclose()

    with caplog.at_level(logging.INFO, logger="poolwarden.notify"):
        asyncio.run(scenario())
    assert [h.payload["title"] for h in pager.received] == [
        "[CRITICAL] xs-a1: psu above critical threshold"]  # warning and info do not page
    assert sorted(m.subject for m in mail.received) == [
        "[CRITICAL] xs-a1: psu above critical threshold",
        "[WARNING] xs-a2: fan above critical threshold"]  # info is not mailed
    assert caplog.text.count(
        "xs-a3|inlet firing [info] inlet above critical threshold: no route, logged only") == 1
    assert {r.subject for r in notifier.sent()} == {m.subject for m in mail.received}


def test_resolved_and_escalation_messages(mail: SmtpSink, pager: WebhookSink,
                                          sqlite_store: Store) -> None:
    clock = Clock()
    notifier = Notifier(make_config(mail, pager), sqlite_store, clock=clock)

    at = stepper(notifier, clock)

    async def scenario() -> None:
        await at(0, alert("psu", "critical"))
        await at(30)
        await at(900)  # 15 min unacknowledged → the directors hear of it
        await at(1000, alert("psu", "critical", firing=False, ts=NOON + 1000))
        await at(1200)
        await notifier.aclose()

    asyncio.run(scenario())
    by_to = [(m.to, m.subject) for m in mail.received]
    assert by_to == [
        (("sysadmin@example.com",), "[CRITICAL] xs-a1: psu above critical threshold"),
        (("directors@example.com",),
         "[ESCALATION, CRITICAL] xs-a1: psu above critical threshold"),
        (("sysadmin@example.com",), "[RESOLVED] xs-a1: psu above critical threshold")]
    resolved = mail.received[-1].body
    assert "are RESOLVED" in resolved
    assert "resolved: 2026-11-24 12:16:40 UTC" in resolved
    assert pager.received[-1].payload["type"] == "success"


def test_a_failing_channel_is_retried_and_recorded_without_secrets(
        mail: SmtpSink, pager: WebhookSink, sqlite_store: Store,
        caplog: pytest.LogCaptureFixture) -> None:
    port = closed_port()
    dead = f"json://poolwarden:s3cretpass@127.0.0.1:{port}/hook?token=T0pS3cret"
    config = make_config(mail, pager, oncall=[dead, pager.url()])
    notifier = Notifier(config, sqlite_store, clock=Clock())

    async def scenario() -> None:
        await notifier.send(message())
        await notifier.drain()
        await notifier.aclose()

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    assert len(pager.received) == 1  # the live channels still delivered
    assert len(mail.received) == 1
    records = {r.channel: r for r in notifier.sent()}
    failed = records[f"json://poolwarden:***@127.0.0.1:{port}/hook?token=***"]
    assert (failed.status, failed.attempts) == ("failed", 4)
    assert failed.error
    for text in (failed.error, failed.channel, caplog.text):
        assert "s3cretpass" not in text
        assert "T0pS3cret" not in text
    assert [f"attempt {i}/4 failed" in caplog.text for i in (1, 2, 3, 4)] == [True] * 4


def test_a_hanging_channel_does_not_hold_up_the_others(
        mail: SmtpSink, pager: WebhookSink, sqlite_store: Store) -> None:
    with socket.socket() as hole:  # accepts connections (backlog), never answers
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)
        hang = f"json://127.0.0.1:{hole.getsockname()[1]}/hook"
        config = make_config(mail, pager, oncall=[hang, pager.url()]).model_copy(
            update={"send_timeout": 0.3, "send_attempts": 2})
        notifier = Notifier(config, sqlite_store, clock=Clock())

        async def scenario() -> list[Any]:
            await notifier.send(message())
            await asyncio.to_thread(pager.wait_for, 1, 5.0)  # while the hang still hangs
            pending = [r.status for r in notifier.sent() if r.channel == hang]
            await notifier.drain()
            await notifier.aclose()
            return pending

        assert asyncio.run(scenario()) == ["sending"]
    assert {r.channel: r.status for r in notifier.sent()}[hang] == "failed"


def test_a_failed_key_is_retried_when_submitted_again(
        mail: SmtpSink, sqlite_store: Store) -> None:
    with WebhookSink(status=503) as down:
        notifier = Notifier(make_config(mail, down), sqlite_store, clock=Clock())

        async def send() -> None:
            await notifier.send(message())
            await notifier.drain()

        asyncio.run(send())
        assert len(down.received) == 4
        down.status = 200
        asyncio.run(send())  # the same key again: e-mail was sent, the page failed
        asyncio.run(notifier.aclose())
        assert len(down.received) == 5
    assert len(mail.received) == 1
    assert sorted((r.scheme, r.status, r.attempts) for r in notifier.sent()) == [
        ("json", "sent", 5), ("mailto", "sent", 1)]


def test_form_webhooks_carry_title_body_and_type(
        mail: SmtpSink, pager: WebhookSink, sqlite_store: Store) -> None:
    config = make_config(mail, pager, oncall=[pager.url("form", "/sms")])
    notifier = Notifier(config, sqlite_store, clock=Clock())

    async def scenario() -> None:
        await notifier.send(message())
        await notifier.drain()
        await notifier.aclose()

    asyncio.run(scenario())
    [hook] = pager.received
    assert hook.path == "/sms"
    assert "x-www-form-urlencoded" in hook.content_type
    assert (hook.payload["title"], hook.payload["message"], hook.payload["type"]) == (
        "xs-a1 evacuated", "3 VMs moved to xs-a2.", "failure")


def test_two_notifiers_on_one_store_never_send_twice(
        mail: SmtpSink, pager: WebhookSink, store: Store) -> None:
    """Two masters (or one restarted) share the store: each notification goes once."""
    config = make_config(mail, pager)
    clock = Clock()
    first, second = (Notifier(config, store, clock=clock) for _ in range(2))
    alerts = [alert("psu", "critical"), alert("fan", "critical")]

    async def scenario() -> None:
        await asyncio.gather(first.submit(alerts), second.submit(alerts))
        clock.now = NOON + 30
        await settle(first, second)
        await asyncio.gather(first.send(message()), second.send(message()))
        await settle(first, second)
        restarted = Notifier(config, store, clock=clock)
        await restarted.submit(alerts)
        await restarted.send(message())
        clock.now = NOON + 60
        await settle(restarted)
        for n in (first, second, restarted):
            await n.aclose()

    asyncio.run(scenario())
    assert [h.payload["title"] for h in pager.received] == [
        "[CRITICAL] 2 alerts on host=xs-a1", "xs-a1 evacuated"]
    assert sorted(m.subject for m in mail.received) == [
        "[CRITICAL] 2 alerts on host=xs-a1", "xs-a1 evacuated"]
    assert [r.status for r in first.sent()] == ["sent"] * 4


def test_quiet_hours_hold_a_warning_message_in_the_store(
        mail: SmtpSink, pager: WebhookSink, sqlite_store: Store) -> None:
    clock = Clock(NIGHT)
    notifier = Notifier(make_config(mail, pager), sqlite_store, clock=clock)

    async def scenario() -> None:
        await notifier.send(message("low-disk", "warning"))
        await notifier.send(message("psu-dead", "critical"))
        await settle(notifier)
        assert [m.subject for m in mail.received] == ["xs-a1 evacuated"]  # the critical
        assert {r.key: r.status for r in notifier.sent()}["msg|low-disk"] == "held"
        clock.now = MORNING - 1
        await settle(notifier)
        assert len(mail.received) == 1
        clock.now = MORNING
        await settle(notifier)
        await notifier.aclose()

    asyncio.run(scenario())
    assert len(mail.received) == 2
    assert {r.key: r.status for r in notifier.sent()}["msg|low-disk"] == "sent"


def test_a_send_abandoned_by_a_dead_process_is_taken_over(
        mail: SmtpSink, pager: WebhookSink, sqlite_store: Store) -> None:
    config = make_config(mail, pager)
    clock = Clock()

    async def never_answers(*_: object) -> None:
        await asyncio.Event().wait()

    dying = Notifier(config, sqlite_store, clock=clock, sender=never_answers)
    asyncio.run(dying.send(message()))  # the loop ends: "killed" mid-send
    assert {r.status for r in dying.sent()} == {"sending"}
    survivor = Notifier(config, sqlite_store, clock=clock)

    async def tick_at(t: float) -> None:
        clock.now = t
        await settle(survivor)

    asyncio.run(tick_at(NOON + 60))  # the dead sender's claim has not expired yet
    assert pager.received == []
    asyncio.run(tick_at(NOON + survivor.claim_ttl))
    asyncio.run(survivor.aclose())
    assert [h.payload["title"] for h in pager.received] == ["xs-a1 evacuated"]
    assert len(mail.received) == 1
    assert {r.status for r in survivor.sent()} == {"sent"}


def test_without_the_store_pages_still_go_out(mail: SmtpSink, pager: WebhookSink,
                                              sqlite_store: Store) -> None:
    """Fail open: a broken ledger risks a duplicate; a lost critical page is worse."""
    notifier = Notifier(make_config(mail, pager), sqlite_store, clock=Clock())
    with sqlite_store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE notification")

    async def scenario() -> None:
        await notifier.send(message())
        await notifier.aclose()

    asyncio.run(scenario())
    assert [h.payload["title"] for h in pager.received] == ["xs-a1 evacuated"]
    assert len(mail.received) == 1


def test_the_same_alert_firing_again_after_resolved_is_news(
        mail: SmtpSink, pager: WebhookSink, sqlite_store: Store) -> None:
    """A reopened incident may keep its start time: its content is as before, but after
    a RESOLVED it must be sent again (the ledger chains each notification to the last)."""
    clock = Clock()
    notifier = Notifier(make_config(mail, pager), sqlite_store, clock=clock)

    at = stepper(notifier, clock)

    async def scenario() -> None:
        await at(0, alert("psu", "critical"))
        await at(30)
        await at(100, alert("psu", "critical", firing=False, ts=NOON + 100))
        await at(330)
        await at(340, alert("psu", "critical"))  # reopened, same starts_at
        await at(630)
        await notifier.aclose()

    asyncio.run(scenario())
    assert [h.payload["type"] for h in pager.received] == ["failure", "success", "failure"]
    restarted = Notifier(make_config(mail, pager), sqlite_store, clock=clock)

    async def again() -> None:  # ... while a restart still sends nothing twice
        await restarted.submit([alert("psu", "critical")])
        clock.now = NOON + 700
        await settle(restarted)
        await restarted.aclose()

    asyncio.run(again())
    assert len(pager.received) == 3
