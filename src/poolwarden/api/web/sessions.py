"""Browser login sessions, kept server-side in the ``web_session`` table.

The cookie carries 256 random bits; the table keeps only their SHA-256 (as for API
tokens, a random secret needs no slow KDF), so a copy of the database cannot be turned
into cookies. Each session also holds its CSRF synchronizer token.

A session ends at the first of: logout, ``api.session_idle`` without activity,
``api.session_max`` after login, the user disabled or their role or password changed
(``api.users`` deletes the rows). Activity is a request a person made: the board's live
updates look the session up without touching it, so a tab left open on a wall screen
still logs out after the idle time. ``last_seen`` is written at most once a minute, not
at every click, to keep writes off a store the service shares.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, or_, select, update

from poolwarden.api.auth import ROLES
from poolwarden.api.users import UserRecord
from poolwarden.store.db import Store
from poolwarden.store.models import WebSession, WebUser

#: the session cookie: ``__Host-`` makes browsers insist on Secure, Path=/ and no Domain
COOKIE = "__Host-poolwarden_session"
#: the login form's pre-session CSRF cookie (double submit)
LOGIN_COOKIE = "__Host-poolwarden_login"
#: ``last_seen`` is rewritten when older than this (seconds)
TOUCH_EVERY = 60.0
_MAX_SECRET = 100


@dataclass(frozen=True, slots=True)
class WebPrincipal:
    """Who is using the browser: the user, their role, and the session's CSRF token."""

    name: str
    role: str
    user_id: int
    session: str  # the row id (digest), never the cookie
    csrf: str

    def allows(self, role: str) -> bool:
        return ROLES[self.role] >= ROLES[role]

    @property
    def author(self) -> str:
        """How acknowledgements and comments are signed (``cli:…``, ``chat:…``)."""
        return f"web:{self.name}"


def session_id(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class SessionManager:
    """Creates, finds and ends sessions; ``clock`` is injectable for expiry tests."""

    def __init__(self, store: Store, idle: float, maximum: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.idle, self.maximum, self.clock = store, idle, maximum, clock

    def create(self, user: UserRecord, address: str) -> tuple[str, WebPrincipal]:
        """A new session for ``user``: the cookie's secret (shown to nobody else) and
        the principal. Sessions past their end are swept on the way."""
        t = self.clock()
        secret = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        sid = session_id(secret)
        with self.store.session() as s:
            s.execute(delete(WebSession).where(or_(WebSession.expires_at <= t,
                                                   WebSession.last_seen <= t - self.idle)))
            s.add(WebSession(id=sid, user_id=user.id, csrf=csrf, address=address[:100],
                             created_at=t, last_seen=t, expires_at=t + self.maximum))
        return secret, WebPrincipal(user.name, user.role, user.id, sid, csrf)

    def lookup(self, secret: str | None, *, touch: bool = True) -> WebPrincipal | None:
        """The principal of a live session, else None (an ended one is deleted).
        ``touch``: this request is activity that keeps the session alive."""
        if not secret or len(secret) > _MAX_SECRET:
            return None
        sid, t = session_id(secret), self.clock()
        q = (select(WebSession, WebUser).join(WebUser, WebUser.id == WebSession.user_id)
             .where(WebSession.id == sid))
        with self.store.session() as s:
            found = s.execute(q).first()
            if found is None:
                return None
            row, user = found
            if (t >= row.expires_at or t - row.last_seen >= self.idle
                    or user.disabled_at is not None):
                s.execute(delete(WebSession).where(WebSession.id == sid))
                return None
            if touch and t - row.last_seen >= TOUCH_EVERY:
                s.execute(update(WebSession).where(WebSession.id == sid)
                          .values(last_seen=t))
            return WebPrincipal(user.name, user.role, user.id, sid, row.csrf)

    def end(self, secret: str | None) -> None:
        """Logout: the row goes, so the cookie is worthless even if it was copied."""
        if secret and len(secret) <= _MAX_SECRET:
            with self.store.session() as s:
                s.execute(delete(WebSession).where(WebSession.id == session_id(secret)))


__all__ = ["COOKIE", "LOGIN_COOKIE", "SessionManager", "WebPrincipal", "session_id"]
