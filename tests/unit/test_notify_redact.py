"""``redact``/``scrub``: no password, token or key of an apprise URL ever gets shown."""

from __future__ import annotations

import logging
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poolwarden.notify.channels import AppriseSender, build_targets, redact, scrub


@pytest.mark.parametrize(("url", "shown", "secrets"), [
    ("mailto://user:pass@example.com", "mailto://user:***@example.com", ["pass"]),
    ("mailtos://alerts:Sup3r%2Fs3cret@mail.example.com:587?smtp=smtp.example.com&mode=starttls"
     "&from=poolwarden@example.com&to=ops@example.com",
     "mailtos://alerts:***@mail.example.com:587?smtp=smtp.example.com&mode=starttls"
     "&from=poolwarden@example.com&to=ops@example.com", ["Sup3r", "s3cret"]),
    ("slack://TokenA/TokenB/TokenC/#chan", "slack://***/***/***/#chan",
     ["TokenA", "TokenB", "TokenC"]),
    ("slack://poolwarden@T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#ops-alerts",
     "slack://***@***/***/***/#ops-alerts", ["T1JJ3T3L2", "A1BRTD4JD", "TIiajkdnlaz"]),
    ("slack://xoxb-1234-5678-abcdefghijklmnop/#general", "slack://***/#general",
     ["xoxb", "abcdefghijklmnop"]),
    ("twilio://SID:Token@+15551234567/+15557654321",
     "twilio://***:***@+15551234567/+15557654321", ["SID", "Token"]),
    ("twilio://AC0123456789abcdef0123456789abcdef:f00ba4@+15551234567/+15557654321",
     "twilio://***:***@+15551234567/+15557654321", ["AC0123456789", "f00ba4"]),
    ("json://user:pass@host/path?token=x", "json://user:***@host/path?token=***",
     ["pass", "token=x"]),
    ("jsons://hooks.example.com/api/v1/AbC123xyz?+X-Api-Key=k3y&method=POST",
     "jsons://hooks.example.com/api/***/***?+X-Api-Key=***&method=POST", ["AbC123xyz", "k3y"]),
    ("tgram://123456789:ABCdefGhIJKlmNoPQRsTUVwxyZ/987654321", "tgram://***/987654321",
     ["123456789", "ABCdef"]),
    ("discord://1234567890123456789/abcDEF-tokenXYZ", "discord://***/***",
     ["1234567890123456789", "abcDEF"]),
    ("form://127.0.0.1:8080/hook", "form://127.0.0.1:8080/hook", []),
    ("pover://uSeRkEy@aPpToKeN", "pover://***@***", ["uSeRkEy", "aPpToKeN"]),
    ("no-scheme-at-all:secret", "***", ["secret"]),
])
def test_redact_keeps_what_identifies_and_masks_what_authenticates(
        url: str, shown: str, secrets: list[str]) -> None:
    assert redact(url) == shown
    for secret in secrets:
        assert secret not in redact(url)


@pytest.mark.parametrize("url", [
    "mailto://user:pa/ss@host",  # a raw / in a password
    "mailto://user:pa?ss@host",  # a raw ? in a password
    "mailto://user:pa#ss@host",  # a raw # in a password
    "mailto://user:p@ss@host",  # a raw @ in a password
])
def test_malformed_passwords_are_over_masked_never_leaked(url: str) -> None:
    assert "ss" not in redact(url).replace("***", "")


alnum = st.text(string.ascii_letters + string.digits, min_size=8, max_size=40)


@given(secret=alnum)
def test_random_passwords_never_show(secret: str) -> None:
    for url in (f"mailto://ops:{secret}@example.com", f"json://u:{secret}@10.0.0.1:80/x",
                f"twilio://AC1:{secret}@+15551234567/+15557654321",
                f"json://example.com/x?apikey={secret}&to=a@example.com"):
        assert secret not in redact(url)


#: tokens as services issue them: letters (some upper case) and digits. All-digit path
#: segments are shown on purpose: they are phone numbers and chat ids, not credentials.
token = alnum.filter(lambda t: any(c.isdigit() for c in t) and any(c.isupper() for c in t))


@given(token=token)
def test_random_tokens_in_hosts_and_paths_never_show(token: str) -> None:
    assert token not in redact(f"json://example.com/hooks/{token}")
    assert token not in redact(f"slack://{token}/{token}/{token}/#ops")
    assert token not in redact(f"tgram://{token}:{token}/12345678")


def test_scrub_cleans_free_text_of_a_urls_secrets() -> None:
    url = "slack://TokenA/TokenB/TokenC/#chan"
    text = ("POST https://hooks.slack.com/services/TokenA/TokenB/TokenC failed; "
            "token TokenB rejected by mailto://bob:hunter2@example.com")
    clean = scrub(text, [url])
    for secret in ("TokenA", "TokenB", "TokenC", "hunter2"):
        assert secret not in clean
    assert "hooks.slack.com" in clean
    assert "mailto://bob:***@example.com" in clean
    assert scrub("nothing secret here") == "nothing secret here"


def test_targets_carry_redacted_names_unique_per_receiver() -> None:
    targets = build_targets({"chat": ["slack://A1/B2/C3/#ops", "slack://D4/E5/F6/#ops"],
                             "mail": ["mailto://u:p@example.com"]})
    assert [t.channel for t in targets["chat"]] == ["slack://***/***/***/#ops",
                                                    "slack://***/***/***/#ops #2"]
    assert targets["mail"][0].scheme == "mailto"
    assert "p@" not in repr(targets["mail"][0])  # the URL is kept out of reprs


def test_apprise_log_records_are_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    url = "json://user:hunter2secret@127.0.0.1:9/x"
    sender = AppriseSender([url])
    try:
        with caplog.at_level(logging.WARNING, logger="apprise"):
            logging.getLogger("apprise").warning("could not reach %s", url)
    finally:
        sender.close()
    assert "hunter2secret" not in caplog.text
    assert "json://user:***@127.0.0.1:9/x" in caplog.text
