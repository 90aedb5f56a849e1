"""CSRF and redirect checks of the dashboard: pure comparisons on headers and tokens."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from poolwarden.api.web import core
from poolwarden.api.web.core import UiError, safe_next, same_origin, tokens_match


def request(**headers: str) -> Request:
    raw = [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/ui/logout",
                    "headers": [(b"host", b"pw.example:8443"), *raw], "query_string": b""})


def test_tokens_match_only_an_equal_nonempty_token() -> None:
    assert tokens_match("abc123", "abc123")
    for given in (None, "", "abc12", "abc1234", "ABC123"):
        assert not tokens_match("abc123", given)
    assert not tokens_match("", "")  # a session without a token matches nothing


def test_tokens_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bytes, bytes]] = []
    real = core.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(core.hmac, "compare_digest", spy)
    assert not tokens_match("expected-token", "guess")
    assert seen == [(b"expected-token", b"guess")]


@pytest.mark.parametrize("headers", [
    {}, {"origin": "https://pw.example:8443"}, {"origin": "http://PW.example:8443"},
    {"sec_fetch_site": "same-origin", "origin": "https://pw.example:8443"},
    {"sec_fetch_site": "none"},
])
def test_same_origin_requests_pass(headers: dict[str, str]) -> None:
    same_origin(request(**headers))


@pytest.mark.parametrize("headers", [
    {"origin": "https://evil.example"}, {"origin": "https://pw.example"},  # other port
    {"origin": "null"}, {"sec_fetch_site": "cross-site"}, {"sec_fetch_site": "same-site"},
    {"sec_fetch_site": "cross-site", "origin": "https://pw.example:8443"},
])
def test_cross_origin_requests_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(UiError) as exc:
        same_origin(request(**headers))
    assert exc.value.status == 403


@pytest.mark.parametrize(("target", "expected"), [
    ("/ui/hosts/xs1?check=a", "/ui/hosts/xs1?check=a"),
    ("/ui/", "/ui/"),
    (None, "/ui/"), ("", "/ui/"),
    ("https://evil.example/ui/", "/ui/"), ("//evil.example/ui/", "/ui/"),
    ("/\\evil.example", "/ui/"), ("/api/v1/tokens", "/ui/"), ("javascript:alert(1)", "/ui/"),
    ("/ui/\r\nSet-Cookie: x", "/ui/"),
])
def test_redirect_targets_stay_on_the_dashboard(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected
