"""Slack's request signature, payloads, escaping and the response_url guard (pure)."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from poolwarden.chat.slack import (
    code,
    escape,
    parse_block_action,
    parse_form,
    parse_slash_command,
    response_url_allowed,
    sign,
    unescape,
    verify_signature,
)
from poolwarden.errors import AuthenticationFailed, UsageError

# The worked example of Slack's "Verifying requests from Slack" documentation.
DOC_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
DOC_TS = "1531420618"
DOC_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2F"
    b"commands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
DOC_SIG = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
NOW = float(DOC_TS) + 30


def test_slacks_documented_example_verifies() -> None:
    assert sign(DOC_SECRET, DOC_TS, DOC_BODY) == DOC_SIG
    verify_signature(DOC_SECRET, DOC_TS, DOC_BODY, DOC_SIG, NOW)


@pytest.mark.parametrize(("secret", "ts", "body", "sig", "now", "reason"), [
    ("another-secret-of-32-characters!", DOC_TS, DOC_BODY, DOC_SIG, NOW, "mismatch"),
    (DOC_SECRET, DOC_TS, DOC_BODY.replace(b"text=", b"text=ack+1"), DOC_SIG, NOW,
     "mismatch"),
    (DOC_SECRET, DOC_TS, DOC_BODY + b"&x=1", DOC_SIG, NOW, "mismatch"),
    (DOC_SECRET, str(int(DOC_TS) + 1), DOC_BODY, DOC_SIG, NOW, "mismatch"),
    (DOC_SECRET, DOC_TS, DOC_BODY, DOC_SIG, float(DOC_TS) + 301, "too old"),
    (DOC_SECRET, DOC_TS, DOC_BODY, DOC_SIG, float(DOC_TS) + 86400, "too old"),
    (DOC_SECRET, DOC_TS, DOC_BODY, DOC_SIG, float(DOC_TS) - 301, "in the future"),
    (DOC_SECRET, None, DOC_BODY, DOC_SIG, NOW, "no X-Slack-Request-Timestamp"),
    (DOC_SECRET, "", DOC_BODY, DOC_SIG, NOW, "no X-Slack-Request-Timestamp"),
    (DOC_SECRET, "1531420618.5", DOC_BODY, DOC_SIG, NOW, "malformed"),
    (DOC_SECRET, "-1531420618", DOC_BODY, DOC_SIG, NOW, "malformed"),
    (DOC_SECRET, " 1531420618", DOC_BODY, DOC_SIG, NOW, "malformed"),
    (DOC_SECRET, "9" * 40, DOC_BODY, DOC_SIG, NOW, "malformed"),
    (DOC_SECRET, DOC_TS, DOC_BODY, None, NOW, "no X-Slack-Signature"),
    (DOC_SECRET, DOC_TS, DOC_BODY, "", NOW, "no X-Slack-Signature"),
    (DOC_SECRET, DOC_TS, DOC_BODY, DOC_SIG.replace("v0=", "v1="), NOW, "malformed"),
    (DOC_SECRET, DOC_TS, DOC_BODY, DOC_SIG[3:], NOW, "malformed"),
    (DOC_SECRET, DOC_TS, DOC_BODY, DOC_SIG.upper().replace("V0=", "v0="), NOW, "malformed"),
    (DOC_SECRET, DOC_TS, DOC_BODY, DOC_SIG[:-1], NOW, "malformed"),
    (DOC_SECRET, DOC_TS, DOC_BODY, DOC_SIG + "00", NOW, "malformed"),
    (DOC_SECRET, DOC_TS, DOC_BODY, DOC_SIG + ",v0=" + "0" * 64, NOW, "malformed"),
    (DOC_SECRET, DOC_TS, DOC_BODY, "v0=" + "0" * 64, NOW, "mismatch"),
    ("", DOC_TS, DOC_BODY, sign("", DOC_TS, DOC_BODY), NOW, "empty"),
])
def test_refusals(secret: str, ts: str | None, body: bytes, sig: str | None, now: float,
                  reason: str) -> None:
    with pytest.raises(AuthenticationFailed, match=reason) as exc:
        verify_signature(secret, ts, body, sig, now)
    assert DOC_SECRET not in str(exc.value)


def test_window_edges() -> None:
    ts = DOC_TS
    for now in (float(ts) + 300, float(ts) - 300, float(ts)):
        verify_signature(DOC_SECRET, ts, DOC_BODY, DOC_SIG, now)


def test_slash_command_is_parsed_from_the_raw_form() -> None:
    cmd = parse_slash_command(parse_form(DOC_BODY))
    assert (cmd.command, cmd.user_id, cmd.user_name, cmd.team_id, cmd.text) == (
        "/webhook-collect", "U2CERLKJA", "roadrunner", "T1DC2JH3J", "")
    assert cmd.response_url.startswith("https://hooks.slack.com/commands/T1DC2JH3J/")
    body = urlencode({"command": "/pw", "user_id": "U1", "team_id": "T1",
                      "text": "ack 3 fan &lt;ok&gt; &amp;amp; done"}).encode()
    assert parse_slash_command(parse_form(body)).text == "ack 3 fan <ok> &amp; done"


@pytest.mark.parametrize("body", [
    b"command=%2Fpw&user_id=U1&user_id=U2",  # a field twice
    b"command=%2Fpw&user_id=U1%0A",  # not an id
    b"command=%2Fpw&user_id=%3C%21channel%3E",
    b"command=%2Fpw",  # no user
    b"command=pw&user_id=U1",  # not a slash command
    b"\xff\xfe",  # not UTF-8
    b"&".join(b"f%d=1" % i for i in range(100)),  # too many fields
])
def test_malformed_slash_commands(body: bytes) -> None:
    with pytest.raises(UsageError):
        parse_slash_command(parse_form(body))


def _interactive(payload: object) -> dict[str, str]:
    return parse_form(urlencode({"payload": json.dumps(payload)}).encode())


def test_block_action_is_parsed() -> None:
    action = parse_block_action(_interactive({
        "type": "block_actions", "user": {"id": "U1", "username": "ann", "team_id": "T1"},
        "team": {"id": "T1", "domain": "x"}, "response_url": "https://hooks.slack.com/a/b",
        "actions": [{"action_id": "poolwarden.cancel", "value": "cancel",
                     "type": "button"}]}))
    assert (action.user_id, action.user_name, action.team_id, action.action_id,
            action.value) == ("U1", "ann", "T1", "poolwarden.cancel", "cancel")
    assert action.response_url == "https://hooks.slack.com/a/b"


@pytest.mark.parametrize("payload", [
    {"type": "view_submission", "user": {"id": "U1"}, "actions": [{"action_id": "a"}]},
    {"type": "block_actions", "actions": [{"action_id": "a"}]},
    {"type": "block_actions", "user": {"id": "U1"}, "actions": []},
    {"type": "block_actions", "user": {"id": "U1"}, "actions": [{"action_id": "a b"}]},
    {"type": "block_actions", "user": {"id": "U1"},
     "actions": [{"action_id": "a", "value": "x" * 3000}]},
    {"type": "block_actions", "user": {"id": ["U1"]}, "actions": [{"action_id": "a"}]},
    ["block_actions"],
])
def test_malformed_block_actions(payload: object) -> None:
    with pytest.raises(UsageError):
        parse_block_action(_interactive(payload))


@pytest.mark.parametrize("body", [b"payload=%7Bnot+json", b"other=1"])
def test_interactive_requests_without_a_json_payload(body: bytes) -> None:
    with pytest.raises(UsageError):
        parse_block_action(parse_form(body))


def test_escaping_keeps_mentions_and_links_inert() -> None:
    assert escape("<!channel> & <@U1|x> <https://evil|click>") == (
        "&lt;!channel&gt; &amp; &lt;@U1|x&gt; &lt;https://evil|click&gt;")
    assert unescape(escape("a <b> & c")) == "a <b> & c"
    block = code("x```<!here>```y")
    assert block.startswith("```")
    assert block.endswith("```")
    assert block[3:-3].count("```") == 0
    assert "<!here>" not in block
    assert code("x" * 5000, 100).endswith("… (cut)```")


@pytest.mark.parametrize(("url", "prefix", "allowed"), [
    ("https://hooks.slack.com/commands/T1/2/abc", "https://hooks.slack.com/", True),
    ("https://HOOKS.slack.com/actions/T1/2/abc", "https://hooks.slack.com/", True),
    ("https://hooks.slack.com/commands/T1", "https://hooks.slack.com/commands", True),
    ("http://127.0.0.1:8999/slack/1", "http://127.0.0.1:8999/slack/", True),
    ("http://hooks.slack.com/commands/1", "https://hooks.slack.com/", False),
    ("https://hooks.slack.com.evil.example/x", "https://hooks.slack.com", False),
    ("https://hooks.slack.com@evil.example/x", "https://hooks.slack.com", False),
    ("https://user@hooks.slack.com/x", "https://hooks.slack.com/", False),
    ("https://hooks.slack.com:8443/x", "https://hooks.slack.com/", False),
    ("https://evil.example/https://hooks.slack.com/", "https://hooks.slack.com/", False),
    ("https://hooks.slack.com/commandsX/1", "https://hooks.slack.com/commands", False),
    ("https://hooks.slack.com/commands/../api/x", "https://hooks.slack.com/commands/", False),
    ("https://hooks.slack.com/commands/%2e%2e/x", "https://hooks.slack.com/commands/",
     False),
    ("https://hooks.slack.com/x y", "https://hooks.slack.com/", False),
    ("https://hooks.slack.com\\@evil/x", "https://hooks.slack.com/", False),
    ("http://127.0.0.1:80/x", "http://127.0.0.1:8999/", False),
    ("http://[::1/x", "http://[::1]/", False),
    ("file:///etc/passwd", "https://hooks.slack.com/", False),
    ("", "https://hooks.slack.com/", False),
])
def test_response_url_guard(url: str, prefix: str, allowed: bool) -> None:
    assert response_url_allowed(url, prefix) is allowed
