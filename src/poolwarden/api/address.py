"""The client's address, also behind reverse proxies (``api.trusted_proxies``).

Rate limits (failed logins, bad tokens, unsigned Slack requests), logs and the sessions'
recorded address key on it. Behind a proxy the TCP peer is the proxy, so the real client
comes from ``X-Forwarded-For`` — but only a proxy we trust may say so, and each proxy
*appends* the address it received from, so only the right end of the header is
trustworthy. :func:`client_address` therefore:

- returns the peer when it is not in a trusted network (the header is ignored: anybody
  can send one);
- otherwise walks ``X-Forwarded-For`` from the right, skipping trusted hops, and returns
  the first untrusted address (what a client writes itself sits further left: ignored);
- returns the leftmost address when every hop is trusted (the client is inside);
- falls back to the peer when the header is missing or an entry it reaches is not an
  address.

uvicorn's own proxy-header handling is switched off (``api.serve``), so the peer seen
here is the real TCP peer.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from starlette.requests import Request

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: hops read from the right of X-Forwarded-For at most
MAX_HOPS = 32
UNKNOWN = "unknown"


@functools.lru_cache(maxsize=32)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """``api.trusted_proxies`` (validated by the configuration) as networks."""
    return tuple(ipaddress.ip_network(e.strip()) for e in entries)


def _address(text: str) -> Address | None:
    """An address as proxies write it (``1.2.3.4``, ``2001:db8::1``, ``[2001:db8::1]``),
    IPv4-mapped IPv6 as IPv4; None for anything else."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(ip: Address, networks: tuple[Network, ...]) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)


def client_address(request: Request, trusted: Iterable[str]) -> str:
    """The address of the client behind ``request`` (see the module): the TCP peer, or —
    when the peer is one of the ``trusted`` proxies — the first untrusted address of
    ``X-Forwarded-For`` read from the right. ``"unknown"`` without a peer."""
    peer = request.client.host if request.client else UNKNOWN
    networks = _networks(tuple(trusted))
    if not networks:
        return peer
    peer_ip = _address(peer)
    if peer_ip is None or not _trusted(peer_ip, networks):
        return peer
    hops = ",".join(request.headers.getlist("x-forwarded-for")).split(",")
    found = peer
    for hop in reversed(hops[-MAX_HOPS:]):
        if not hop.strip():
            continue
        ip = _address(hop)
        if ip is None:
            return peer
        found = str(ip)
        if not _trusted(ip, networks):
            return found
    if len(hops) > MAX_HOPS:  # more trusted hops than any real chain: not believed
        return peer
    return found


def https(request: Request, trusted: Iterable[str]) -> bool:
    """Whether the browser reached us over HTTPS: here, or at a trusted proxy that says
    so in ``X-Forwarded-Proto`` (from anybody else the header means nothing)."""
    if request.url.scheme == "https":
        return True
    peer = _address(request.client.host) if request.client else None
    return (peer is not None and _trusted(peer, _networks(tuple(trusted)))
            and request.headers.get("x-forwarded-proto", "").strip().lower() == "https")


__all__ = ["client_address", "https"]
