"""The notifier reads the store's downtimes (SQLite and PostgreSQL): a covered alert pages
nobody; cancelling the downtime lets it through; a store that fails keeps the last list."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy.exc import OperationalError
from test_notify_channels import Clock, alert, mail, make_config, pager, settle

from poolwarden.notify.notifier import Notifier
from poolwarden.notify.sinks import SmtpSink, WebhookSink
from poolwarden.store.db import Store
from poolwarden.store.downtimes import Downtimes

__all__ = ["mail", "pager"]  # fixtures of test_notify_channels, used here


def test_a_downtime_holds_the_page_until_it_is_cancelled(
        mail: SmtpSink, pager: WebhookSink, store: Store,
        monkeypatch: pytest.MonkeyPatch) -> None:
    t0 = time.time()
    clock = Clock(t0)
    dts = Downtimes(store)
    work = dts.schedule("xs-a1", ends_at=t0 + 7200, author="cli:ann", comment="firmware")
    notifier = Notifier(make_config(mail, pager), store, clock=clock, downtime_refresh=0)
    covered = alert("CPU1 Temp", "critical", starts=t0, ts=t0)
    other = alert("CPU1 Temp", "critical", host="xs-a2", starts=t0, ts=t0)

    async def scenario() -> None:
        await notifier.submit([covered, other])
        clock.now = t0 + 60
        await settle(notifier)  # xs-a2 pages; xs-a1 is held back
        assert [p.payload["title"] for p in pager.received] == [
            "[CRITICAL] xs-a2: CPU1 Temp above critical threshold"]

        def down(*_: object, **__: object) -> object:
            raise OperationalError("select", {}, Exception("store down"))

        with monkeypatch.context() as m:  # the store blinks: the downtime still holds
            m.setattr(Downtimes, "current", down)
            clock.now = t0 + 400
            await settle(notifier)
        assert len(pager.received) == 1

        dts.cancel(work.id, "api:ops")
        clock.now = t0 + 401
        await settle(notifier)
        await notifier.aclose()

    asyncio.run(scenario())
    assert [p.payload["title"] for p in pager.received][1:] == [
        "[CRITICAL] xs-a1: CPU1 Temp above critical threshold"]
