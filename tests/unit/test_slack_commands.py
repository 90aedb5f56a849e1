"""The chat command syntax, the signed confirmations and the rendered messages (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from poolwarden.chat import render
from poolwarden.chat.commands import (
    CONFIRM_TTL,
    Ack,
    Command,
    DowntimeAdd,
    DowntimeCancel,
    DowntimeList,
    Enable,
    Help,
    Maintenance,
    Script,
    Status,
    open_confirmation,
    parse_command,
    required_role,
    sign_confirmation,
)
from poolwarden.errors import AuthenticationFailed, OperationRefused, UsageError

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = 1_700_000_000.0


@pytest.mark.parametrize(("text", "expected"), [
    ("", Help()),
    ("  help ", Help()),
    ("status", Status()),
    ("status xs-a1", Status("xs-a1")),
    ("STATUS #prod-a", Status("prod-a")),
    ("ack 12", Ack(12)),
    ("ack #12   fan replacement ordered  ", Ack(12, "fan replacement ordered")),
    ("Ack 7 <!channel> & co", Ack(7, "<!channel> & co")),
    ("XESCRIPT #xs1 #reboot-check", Script("xs1", "reboot-check")),
    ("xescript #xs1 #job a 1 on", Script("xs1", "job", ("a", "1", "on"))),
    ("maintenance xs-a2", Maintenance("xs-a2")),
    ("maintenance xs-a2 dry-run", Maintenance("xs-a2", dry_run=True)),
    ("maintenance #xs-a2 --dry-run", Maintenance("xs-a2", dry_run=True)),
    ("enable xs-a2", Enable("xs-a2")),
    ("Enable #xs-a2 Restore", Enable("xs-a2", restore=True)),
    ("enable xs-a2 dry-run restore", Enable("xs-a2", restore=True, dry_run=True)),
    ("downtime xs-a2 2h BIOS <update> & co", DowntimeAdd("xs-a2", 7200.0, "BIOS <update> & co")),
    ("Downtime #xs-a2 90m", DowntimeAdd("xs-a2", 5400.0)),
    ("downtime list", DowntimeList()),
    ("downtime list xs-a2", DowntimeList("xs-a2")),
    ("downtime cancel #12", DowntimeCancel(12)),
])
def test_accepted(text: str, expected: Command) -> None:
    assert parse_command(text) == expected


def test_xescript_slash_command_takes_the_chat_syntax_without_its_keyword() -> None:
    assert parse_command("#xs1 #job a", slash="/xescript") == Script("xs1", "job", ("a",))


@pytest.mark.parametrize(("text", "fragment"), [
    ("reboot xs1", "unknown command"),
    ("help me", "help takes nothing"),
    ("status a b", "usage"),
    ("status xs1;rm", "bad host or pool name"),
    ("status ../etc", "bad host or pool name"),
    ("ack", "usage"),
    ("ack twelve", "usage"),
    ("ack 1" + "0" * 20, "usage"),
    ("ack 3 " + "x" * 1001, "comment too long"),
    ("ack 3 fine\nXESCRIPT #xs1 #job", "one line"),
    ("maintenance", "usage"),
    ("maintenance xs1 now", "usage"),
    ("maintenance xs1 dry-run dry-run", "usage"),
    ("maintenance $(reboot)", "bad host name"),
    ("enable", "usage"),
    ("enable xs1 now", "usage"),
    ("enable xs1 restore restore", "usage"),
    ("enable xs1 dry-run --dry-run", "usage"),
    ("enable `reboot`", "bad host name"),
    ("downtime", "usage: `downtime HOST DURATION"),
    ("downtime xs1", "usage"),
    ("downtime xs1 forever", "not a duration"),
    ("downtime xs1 -2h", "not a duration"),
    ("downtime $(id) 2h", "bad host name"),
    ("downtime cancel twelve", "usage"),
    ("downtime list a b", "usage"),
    ("downtime xs1 2h " + "x" * 1001, "comment too long"),
    ("XESCRIPT #xs1", "#host and a #script"),
    ("XESCRIPT #xs1 #../../bin/sh", "script"),
    ("status \x00", "one line"),
    ("status " + "x" * 5000, "too long"),
])
def test_refused(text: str, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        parse_command(text)


def test_roles() -> None:
    assert [required_role(c) for c in (Help(), Status(), Ack(1), Script("h", "s"),
                                       Maintenance("h"), Enable("h"), DowntimeAdd("h", 1.0),
                                       DowntimeCancel(1), DowntimeList())] == [
        "viewer", "viewer", "operator", "operator", "operator", "operator", "operator",
        "operator", "viewer"]


@pytest.mark.parametrize("command", [Enable("xs-a2"), Enable("xs-a2", restore=True)])
def test_a_confirmation_carries_what_to_do(command: Enable) -> None:
    conf = open_confirmation(SECRET, token(command=command), "U1", "T1", NOW)
    assert conf.command == command
    assert open_confirmation(SECRET, token(), "U1", "T1", NOW).command == Maintenance("xs-a2")


# --- confirmation tokens -------------------------------------------------------------------


def token(**kw: Any) -> str:
    args: dict[str, Any] = {"secret": SECRET, "command": Maintenance("xs-a2"),
                            "user_id": "U1", "team_id": "T1", "now": NOW, "nonce": "n1"}
    args.update(kw)
    return sign_confirmation(**args)


def test_a_confirmation_opens_for_its_user_before_expiry() -> None:
    conf = open_confirmation(SECRET, token(), "U1", "T1", NOW + CONFIRM_TTL)
    assert (conf.command, conf.user_id, conf.team_id, conf.nonce) == (
        Maintenance("xs-a2"), "U1", "T1", "n1")
    assert conf.expires == NOW + CONFIRM_TTL
    assert len(token()) < 2000  # a button value's limit


def test_expired_or_other_users_confirmations_are_refused() -> None:
    with pytest.raises(OperationRefused, match="expired"):
        open_confirmation(SECRET, token(), "U1", "T1", NOW + CONFIRM_TTL + 1)
    with pytest.raises(OperationRefused, match="only the person who asked"):
        open_confirmation(SECRET, token(), "U2", "T1", NOW)
    with pytest.raises(OperationRefused, match="only the person who asked"):
        open_confirmation(SECRET, token(), "U1", "T2", NOW)


def _b64(doc: dict[str, Any]) -> str:
    import base64

    raw = json.dumps(doc, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize("forge", [
    lambda t: token(secret="another-secret"),  # signed with another key
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # MAC altered
    # the payload changed (another host, a later expiry, another user), MAC kept
    lambda t: "v1." + _b64({"a": "maintenance", "h": "xs-a1", "u": "U1", "t": "T1",
                            "e": int(NOW) + 300, "n": "n1"}) + "." + t.split(".")[2],
    lambda t: "v1." + _b64({"a": "maintenance", "h": "xs-a2", "u": "U1", "t": "T1",
                            "e": int(NOW) + 99999, "n": "n1"}) + "." + t.split(".")[2],
    lambda t: "v2" + t[2:],
    lambda t: t + ".x",
    lambda t: "cancel",
    lambda t: "",
    # the Slack request signature's own scheme is no confirmation key
    lambda t: t.split(".")[0] + "." + t.split(".")[1] + ".v0=abc",
])
def test_forged_confirmations_are_refused(forge: Any) -> None:
    with pytest.raises(AuthenticationFailed):
        open_confirmation(SECRET, forge(token()), "U1", "T1", NOW)


def test_dry_runs_need_no_confirmation() -> None:
    with pytest.raises(UsageError):
        token(command=Maintenance("xs-a2", dry_run=True))


# --- messages ------------------------------------------------------------------------------


def _texts(msg: dict[str, Any]) -> str:
    return json.dumps(msg)


def test_messages_escape_what_they_did_not_write() -> None:
    pool = {"name": "p", "master": "xs1", "read_at": NOW, "error": None, "hosts": [
        {"name": "xs1", "master": True, "enabled": True, "live": True,
         "vms": ["<!channel>", "a&b"]}], "halted_vms": ["<@U1>"]}
    out = _texts(render.pool_status(pool))
    assert "<!channel>" not in out
    assert "&lt;!channel&gt;" in out
    assert "<@U1>" not in out
    assert "a&amp;b" in out
    inc = {"id": 3, "host": "xs1", "check": "c", "severity": "critical",
           "ack": {"by": "slack:U1 (<!here>)", "comment": "<https://evil|x>"}}
    out = _texts(render.acknowledged(inc))
    assert "<!here>" not in out
    assert "<https://evil" not in out
    result = {"host": "xs1", "script": "s", "args": ["<!everyone>"], "ok": True,
              "status": "ok", "exit_status": 0, "duration": 0.1,
              "stdout": "```<!channel>", "stderr": ""}
    out = _texts(render.script_result(result, 9))
    assert "<!channel>" not in out
    assert "<!everyone>" not in out


def test_a_feasible_plan_to_confirm_has_the_buttons() -> None:
    doc = {"remediation": 4, "host": "xs2", "pool": "p", "feasible": True,
           "steps": [{"title": "disable xs2"}], "master_before": "xs1", "master_after": "xs1"}
    msg = render.plan(doc, confirm_value="v1.x.y")
    [actions] = [b for b in msg["blocks"] if b["type"] == "actions"]
    assert [(e["action_id"], e["value"]) for e in actions["elements"]] == [
        (render.CONFIRM_ACTION, "v1.x.y"), (render.CANCEL_ACTION, "v1.x.y")]
    assert msg["response_type"] == "ephemeral"
    assert not [b for b in render.plan(doc)["blocks"] if b["type"] == "actions"]
    infeasible = render.plan({**doc, "feasible": False,
                              "blockers": [{"message": "db-local cannot leave"}]})
    assert "infeasible" in _texts(infeasible)
    assert not [b for b in infeasible["blocks"] if b["type"] == "actions"]
