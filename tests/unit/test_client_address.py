"""``client_address``: the peer, or behind trusted proxies the first untrusted hop of
X-Forwarded-For read from the right; and ``api.trusted_proxies``' validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.requests import Request

from poolwarden.api.address import MAX_HOPS, client_address, https
from poolwarden.config.models import Config, load_config
from poolwarden.errors import ConfigError

PROXIES = ["10.0.0.0/24", "192.0.2.10", "fd00::/8"]


def request(peer: str | None, *forwarded: str) -> Request:
    headers = [(b"x-forwarded-for", value.encode("latin-1")) for value in forwarded]
    scope = {"type": "http", "method": "GET", "path": "/", "headers": headers,
             "client": (peer, 40000) if peer is not None else None}
    return Request(scope)


def proto(peer: str, scheme: str, forwarded_proto: str | None) -> Request:
    headers = [] if forwarded_proto is None else [
        (b"x-forwarded-proto", forwarded_proto.encode("latin-1"))]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers,
                    "scheme": scheme, "server": ("pw", 8080), "client": (peer, 40000)})


def test_https_is_believed_from_a_trusted_proxy_only() -> None:
    assert https(proto("198.51.100.7", "https", None), [])
    assert https(proto("10.0.0.5", "http", "https"), PROXIES)
    assert https(proto("10.0.0.5", "http", " HTTPS "), PROXIES)
    assert not https(proto("10.0.0.5", "http", "http"), PROXIES)
    assert not https(proto("10.0.0.5", "http", None), PROXIES)
    assert not https(proto("198.51.100.7", "http", "https"), PROXIES)  # anybody could
    assert not https(proto("10.0.0.5", "http", "https"), [])


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert client_address(request("198.51.100.7", "203.0.113.1"), []) == "198.51.100.7"
    assert client_address(request("testclient"), []) == "testclient"
    assert client_address(request(None), PROXIES) == "unknown"


def test_a_header_from_an_untrusted_peer_is_ignored() -> None:
    spoofed = request("198.51.100.7", "203.0.113.1")
    assert client_address(spoofed, PROXIES) == "198.51.100.7"
    # not an address at all (a unix socket, TestClient's "testclient"): never trusted
    assert client_address(request("testclient", "203.0.113.1"), PROXIES) == "testclient"


def test_behind_one_trusted_proxy_the_appended_address_is_the_client() -> None:
    assert client_address(request("10.0.0.5", "203.0.113.1"), PROXIES) == "203.0.113.1"
    assert client_address(request("192.0.2.10", " 203.0.113.1 "), PROXIES) == "203.0.113.1"
    # what the client wrote itself sits to the left of what the proxy appended
    forged = request("10.0.0.5", "127.0.0.1, 10.0.0.9, 203.0.113.1")
    assert client_address(forged, PROXIES) == "203.0.113.1"


def test_a_chain_of_trusted_proxies_is_walked_from_the_right() -> None:
    chain = request("10.0.0.5", "203.0.113.1, 198.51.100.2, 192.0.2.10, 10.0.0.7")
    assert client_address(chain, PROXIES) == "198.51.100.2"
    # several header lines are one list, in order
    split = request("10.0.0.5", "203.0.113.1, 198.51.100.2", "192.0.2.10")
    assert client_address(split, PROXIES) == "198.51.100.2"
    ipv6 = request("fd00::1", "2001:db8::5, [fd00::2]")
    assert client_address(ipv6, PROXIES) == "2001:db8::5"


def test_a_client_inside_the_trusted_networks_is_the_leftmost_hop() -> None:
    assert client_address(request("10.0.0.5", "10.0.0.9, 192.0.2.10"), PROXIES) == "10.0.0.9"
    too_long = ", ".join(["10.0.0.9"] * (MAX_HOPS + 1))
    assert client_address(request("10.0.0.5", too_long), PROXIES) == "10.0.0.5"


def test_missing_or_malformed_headers_fall_back_to_the_peer() -> None:
    assert client_address(request("10.0.0.5"), PROXIES) == "10.0.0.5"
    assert client_address(request("10.0.0.5", ""), PROXIES) == "10.0.0.5"
    for garbage in ("unknown", "203.0.113.1:443", "999.1.1.1", "<script>", "a, b, c",
                    "203.0.113.1, _hidden", "203.0.113.1, 10.0.0.9, not-an-ip"):
        assert client_address(request("10.0.0.5", garbage), PROXIES) == "10.0.0.5", garbage
    # garbage to the left of the first untrusted hop is never reached
    assert client_address(request("10.0.0.5", "junk, 203.0.113.1"), PROXIES) == "203.0.113.1"


def test_addresses_are_compared_as_addresses() -> None:
    # an IPv4 peer seen through a dual-stack socket is still in the IPv4 network
    assert client_address(request("::ffff:10.0.0.5", "203.0.113.1"), PROXIES) == "203.0.113.1"
    assert client_address(request("10.0.0.5", "2001:DB8:0::5"), PROXIES) == "2001:db8::5"
    # an IPv4 network does not take IPv6 addresses, nor the reverse
    assert client_address(request("fd00::1", "10.0.0.9"), PROXIES) == "10.0.0.9"


def test_trusted_proxies_are_validated(tmp_path: Path) -> None:
    cfg = Config.model_validate({"api": {"trusted_proxies": [" 10.0.0.0/24", "::1"]}})
    assert cfg.api.trusted_proxies == ["10.0.0.0/24", "::1"]
    assert Config().api.trusted_proxies == []
    for bad, message in (("10.0.0.300", "'10.0.0.300' is not an IP address or CIDR network"),
                         ("proxy.example.com", "'proxy.example.com' is not an IP address"),
                         ("10.0.0.1/24", "has host bits set: did you mean 10.0.0.0/24?")):
        path = tmp_path / "poolwarden.yaml"
        path.write_text(f"api:\n  trusted_proxies:\n    - 10.1.0.0/16\n    - {bad}\n")
        with pytest.raises(ConfigError) as exc:
            load_config(path)
        assert message in str(exc.value)
        assert "api.trusted_proxies" in str(exc.value)
