"""Bearer tokens for the HTTP API: creation, revocation, checking, roles, rate limiting.

A token is ``pw_`` followed by 32 random bytes (URL-safe base64). The store keeps only its
SHA-256 digest and its first :data:`ID_LENGTH` characters in clear (``token_id``), so a
request finds its row with an indexed lookup and a leaked database grants nothing: the
digest of a 256-bit random value cannot be reversed, and needs no slow KDF because the
input is not guessable like a password. Digests are compared with
:func:`hmac.compare_digest` so the comparison time says nothing about how close a guess
was. Secrets never reach a log: only the ``token_id`` and the token's name are logged.

Roles are ordered ``admin`` > ``operator`` > ``viewer``: a route requiring a role accepts
any higher one.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select

from poolwarden.api.address import client_address
from poolwarden.api.context import get_context
from poolwarden.errors import NotFound, UsageError
from poolwarden.store.db import Store, now
from poolwarden.store.models import ApiToken

log = logging.getLogger("poolwarden.api")

PREFIX = "pw_"
#: characters of the token (prefix included) kept in clear to find its row
ID_LENGTH = 15
#: role name -> rank; a higher rank may do everything a lower one may
ROLES: dict[str, int] = {"viewer": 1, "operator": 2, "admin": 3}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's name (the author of what they do), role and id."""

    name: str
    role: str
    token_id: str

    def allows(self, role: str) -> bool:
        return ROLES[self.role] >= ROLES[role]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r} (one of: {', '.join(ROLES)})")
    return role


def create_token(store: Store, role: str, name: str) -> str:
    """A new token for ``name`` with ``role``; the returned secret is not stored anywhere,
    so this is the only time anyone sees it."""
    _check_role(role)
    if not name.strip():
        raise UsageError("a token needs a name (it is the author of what it does)")
    token = PREFIX + secrets.token_urlsafe(32)
    with store.session() as s:
        s.add(ApiToken(token_id=token[:ID_LENGTH], digest=_digest(token), name=name,
                       role=role, created_at=now()))
    log.info("API token %s created for %s (%s)", token[:ID_LENGTH], name, role)
    return token


def token_id(token: str) -> str:
    """The part of a token that is safe to show and log (and names it for ``revoke``)."""
    return token[:ID_LENGTH]


def revoke(store: Store, token_or_id: str) -> None:
    """Stop a token from working (by its ``token_id`` or the token itself); the row stays
    for the audit trail. ``NotFound`` if no active token has that id."""
    tid = token_or_id[:ID_LENGTH]
    with store.session() as s:
        row = s.scalars(select(ApiToken).where(ApiToken.token_id == tid,
                                               ApiToken.revoked_at.is_(None))
                        .with_for_update()).first()
        if row is None:
            raise NotFound(f"no active API token {tid}")
        row.revoked_at = now()
    log.info("API token %s revoked", tid)


def authenticate(store: Store, token: str) -> Principal | None:
    """The principal a token stands for, or None for an unknown, revoked or wrong one."""
    if not token.startswith(PREFIX) or len(token) <= ID_LENGTH or len(token) > 200:
        return None
    with store.session() as s:
        row = s.scalars(select(ApiToken).where(ApiToken.token_id == token[:ID_LENGTH])).first()
    # Compared even when no row was found, so that the response time does not tell
    # whether a token id exists.
    expected = row.digest if row is not None else "0" * 64
    if not hmac.compare_digest(expected, _digest(token)) or row is None:
        return None
    if row.revoked_at is not None:
        return None
    return Principal(row.name, row.role, row.token_id)


class FailureLimiter:
    """Failed authentications per client address in a sliding window, in memory.

    Guessing a 256-bit token is hopeless anyway; the limit keeps a scanner from filling
    logs and the database with lookups. An address over the limit is refused (429) even
    with a valid token until its old failures leave the window: checking the token first
    would let a scanner keep going.
    """

    def __init__(self, limit: int = 10, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self._clock = limit, window, clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()  # sync routes run in a thread pool

    def _recent(self, address: str, t: float) -> deque[float] | None:
        q = self._failures.get(address)
        if q is None:
            return None
        while q and q[0] <= t - self.window:
            q.popleft()
        if not q:
            del self._failures[address]
            return None
        return q

    def retry_after(self, address: str) -> float | None:
        """Seconds until ``address`` may try again, None if it is not limited."""
        t = self._clock()
        with self._lock:
            q = self._recent(address, t)
            if q is None or len(q) < self.limit:
                return None
            return max(0.0, q[0] + self.window - t)

    def failed(self, address: str) -> None:
        t = self._clock()
        with self._lock:
            self._recent(address, t)
            self._failures.setdefault(address, deque()).append(t)
            if len(self._failures) > 100_000:  # a flood of addresses: forget the oldest
                self._failures.pop(next(iter(self._failures)))


@dataclass
class AuthState:
    """What ``require`` needs, kept on ``app.state.auth`` by ``create_app``."""

    store: Store
    limiter: FailureLimiter


_bearer = HTTPBearer(auto_error=False, description="An API token: `poolwarden token create`.")


def require(role: str) -> Callable[..., Principal]:
    """A FastAPI dependency: the caller's :class:`Principal` if its bearer token is valid
    (else 401) and its role is at least ``role`` (else 403); 429 while the client address
    has too many recent failures."""
    _check_role(role)

    def dependency(request: Request, credentials: Annotated[
            HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
        auth: AuthState = request.app.state.auth
        address = client_address(request, get_context(request).config.api.trusted_proxies)
        wait = auth.limiter.retry_after(address)
        if wait is not None:
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                                "too many failed authentications",
                                headers={"Retry-After": str(int(wait) + 1)})
        principal = (authenticate(auth.store, credentials.credentials)
                     if credentials is not None else None)
        if principal is None:
            auth.limiter.failed(address)
            log.warning("API authentication failed from %s", address)
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a valid API token is required",
                                headers={"WWW-Authenticate": "Bearer"})
        if not principal.allows(role):
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"this needs the {role} role (token has {principal.role})")
        return principal

    return dependency
