"""Leaving maintenance from Slack (``enable HOST [restore] [dry-run]``, planned, confirmed
with a signed single-use button as a maintenance is, carried out on the lab) and
scheduled downtimes (``downtime HOST DURATION [comment]``, ``cancel``, ``list``)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from test_slack import (
    OPERATOR,
    VIEWER,
    _buttons,
    _hooks,
    click,
    command,
    config,
    patient,
    receiver,
    text_of,
)

from poolwarden.api.app import create_app
from poolwarden.chat import render
from poolwarden.lab import Lab
from poolwarden.notify.sinks import WebhookSink
from poolwarden.store.db import Store
from poolwarden.store.downtimes import Downtimes

__all__ = ["patient", "receiver"]  # fixtures of test_slack, used here


def test_leaving_maintenance_is_planned_confirmed_and_reported(
        store: Store, receiver: WebhookSink, lab: Lab) -> None:
    layout = lab.sim.layout()
    app = create_app(None, store, config=config(receiver, lab=lab))
    with TestClient(app) as client:
        assert "needs the operator role" in text_of(
            command(client, "enable xstest3", receiver, user=VIEWER))
        assert "usage: `enable HOST" in text_of(
            command(client, "enable xstest3 restore restore", receiver))
        went = command(client, "maintenance xstest3", receiver)
        assert "started" in text_of(click(client, render.CONFIRM_ACTION,
                                          _buttons(went)[render.CONFIRM_ACTION], receiver))
        _hooks(receiver, 2)  # the click's answer, then the result
        receiver.clear()
        assert not lab.sim.hosts()["xstest3"].enabled

        dry = command(client, "enable xstest3 restore dry-run", receiver)
        assert "leaving maintenance of *xstest3*" in text_of(dry)
        assert "(dry run)" in text_of(dry)
        assert not _buttons(dry)
        ask = command(client, "enable xstest3 restore", receiver)
        assert "confirm within 5 minutes" in text_of(ask)
        assert "enable xstest3 (leave maintenance)" in text_of(ask)
        assert "to xstest3" in text_of(ask)  # the VMs coming back
        assert not lab.sim.hosts()["xstest3"].enabled  # nothing happened yet

        token = _buttons(ask)[render.CONFIRM_ACTION]
        started = click(client, render.CONFIRM_ACTION, token, receiver)
        assert "leaving maintenance of *xstest3* (restoring VMs) started" in text_of(started)
        assert "already confirmed or cancelled" in text_of(
            click(client, render.CONFIRM_ACTION, token, receiver))
        posted = _hooks(receiver, 3)
        result = next(h.payload for h in posted if "remediation #" in h.payload["text"])
        assert "leaving maintenance of *xstest3*" in text_of(result)
        assert ": done" in text_of(result)
        assert f"asked by slack:{OPERATOR}" in text_of(result)
    assert lab.sim.hosts()["xstest3"].enabled
    assert sorted(lab.sim.layout()["xstest3"]) == sorted(layout["xstest3"])


@pytest.mark.parametrize("text", ["enable", "enable xstest3 now", "enable ../x",
                                  "enable xstest3 dry-run --dry-run"])
def test_malformed_enable_is_refused_with_the_usage(
        store: Store, receiver: WebhookSink, text: str) -> None:
    with TestClient(create_app(None, store, config=config(receiver))) as client:
        answer = text_of(command(client, text, receiver))
    assert "enable HOST" in answer or "bad host name" in answer


def test_downtimes_from_chat(store: Store, receiver: WebhookSink) -> None:
    with TestClient(create_app(None, store, config=config(receiver))) as client:
        assert "needs the operator role" in text_of(
            command(client, "downtime xstest1 2h BIOS", receiver, user=VIEWER))
        assert "no active or scheduled downtime" in text_of(
            command(client, "downtime list", receiver, user=VIEWER))
        made = text_of(command(client, "downtime xstest1 2h BIOS <update>", receiver))
        assert "downtime #1 on *xstest1* until" in made
        assert "BIOS &lt;update&gt;" in made
        [rec] = Downtimes(store).current()
        assert (rec.host, rec.author, rec.comment) == (
            "xstest1", f"slack:{OPERATOR} (name-of-{OPERATOR.lower()})", "BIOS <update>")
        assert 7190 < rec.ends_at - rec.starts_at <= 7200
        listed = text_of(command(client, "downtime list xstest1", receiver, user=VIEWER))
        assert "#1 *xstest1* (every check) active" in listed
        assert "no host 'nope'" in text_of(command(client, "downtime nope 1h", receiver))
        gone = text_of(command(client, "downtime cancel 1", receiver))
        assert "downtime #1 on *xstest1* cancelled by slack:" in gone
        assert "already cancelled" in text_of(command(client, "downtime cancel 1", receiver))
    assert Downtimes(store).current() == []
