"""Dashboard users: names, roles and passwords (``poolwarden user``, the login form).

Passwords are kept as salted ``scrypt`` hashes (RFC 7914), a memory-hard KDF: unlike API
tokens (256 random bits, where one SHA-256 suffices) a password is guessable, so every
guess against a stolen table must cost real memory and time. The parameters are stored
with each hash (``scrypt$<log2 n>$<r>$<p>$<salt>$<hash>``), so they can be raised later:
a login with an older hash rewrites it (:func:`needs_rehash`).

Hashes are compared with :func:`hmac.compare_digest`, and a login for a name that does not
exist still runs one scrypt against a dummy hash, so neither the comparison nor the
response time tells whether a name exists. Changing a user's role or password, or
disabling them, ends their browser sessions at once.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from poolwarden.api.auth import ROLES
from poolwarden.errors import NotFound, OperationRefused, UsageError
from poolwarden.store.db import Store, now
from poolwarden.store.models import WebSession, WebUser

log = logging.getLogger("poolwarden.api")

#: scrypt cost: n = 2**15, r = 8, p = 1 takes 32 MiB and ~0.1 s per hash on a server core
LOG2_N, BLOCK_R, PARALLEL_P = 15, 8, 1
SALT_BYTES, HASH_BYTES = 16, 32
MIN_PASSWORD, MAX_PASSWORD = 12, 1024
#: lower-case letters, digits and ``._@-``; it is the author of what the user does
NAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user as callers see it (never the hash); ``sessions`` counts live logins."""

    id: int
    name: str
    role: str
    created_at: float
    disabled_at: float | None
    sessions: int = 0
    last_seen: float | None = None

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "role": self.role, "created_at": self.created_at,
                "disabled_at": self.disabled_at, "disabled": self.disabled_at is not None,
                "sessions": self.sessions, "last_seen": self.last_seen}


# --- passwords -------------------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=256 * r * n * p + (1 << 20), dklen=HASH_BYTES)


def hash_password(password: str, *, log2_n: int = LOG2_N, r: int = BLOCK_R,
                  p: int = PARALLEL_P) -> str:
    """The stored form of ``password``: algorithm, cost parameters, salt and hash."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, log2_n, r, p)
    return f"scrypt${log2_n}${r}${p}${_b64(salt)}${_b64(digest)}"


def _parse(encoded: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return None
    try:
        log2_n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except ValueError:  # binascii.Error is one
        return None
    if not (1 <= log2_n <= 20 and 1 <= r <= 32 and 1 <= p <= 16):  # bounded memory
        return None
    if len(salt) < 8 or len(digest) != HASH_BYTES:
        return None
    return log2_n, r, p, salt, digest


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches the stored ``encoded`` hash (constant-time compare);
    False for a malformed hash, which therefore locks the user out rather than in."""
    parsed = _parse(encoded)
    if parsed is None or len(password) > MAX_PASSWORD:
        return False
    log2_n, r, p, salt, digest = parsed
    return hmac.compare_digest(_scrypt(password, salt, log2_n, r, p), digest)


def needs_rehash(encoded: str) -> bool:
    """The hash was made with weaker parameters than today's: rewrite it at next login."""
    parsed = _parse(encoded)
    return parsed is None or parsed[:3] < (LOG2_N, BLOCK_R, PARALLEL_P)


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def check_password_policy(password: str) -> None:
    """At least :data:`MIN_PASSWORD` characters (length is what makes a password strong),
    at most :data:`MAX_PASSWORD`; ``UsageError`` otherwise."""
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UsageError(f"a password has at most {MAX_PASSWORD} characters")
    if password != password.strip() or "\n" in password:
        raise UsageError("a password cannot start or end with white space")


def generate_password() -> str:
    """A strong password for people who did not choose one (144 random bits)."""
    return secrets.token_urlsafe(18)


def normalise_name(name: str) -> str:
    """The stored form of a user name (lower case), or ``UsageError``."""
    folded = name.strip().lower()
    if not NAME.match(folded):
        raise UsageError(f"invalid user name {name!r}: 1 to 64 of a-z 0-9 . _ @ - "
                         "(starting with a letter or digit)")
    return folded


def _role(role: str) -> str:
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r} (one of: {', '.join(ROLES)})")
    return role


# --- the users table -------------------------------------------------------------------------


def _record(row: WebUser, sessions: int = 0, last_seen: float | None = None) -> UserRecord:
    return UserRecord(row.id, row.name, row.role, row.created_at, row.disabled_at,
                      sessions, last_seen)


def _user(s: Session, name: str) -> WebUser:
    row = s.scalars(select(WebUser).where(WebUser.name == normalise_name(name))
                    .with_for_update()).first()
    if row is None:
        raise NotFound(f"no dashboard user {name!r}")
    return row


def _end_sessions(s: Session, user_id: int) -> int:
    result = s.execute(delete(WebSession).where(WebSession.user_id == user_id))
    return int(cast(CursorResult[Any], result).rowcount)


def create_user(store: Store, name: str, role: str, password: str) -> UserRecord:
    """A new user; ``OperationRefused`` if the name is taken (disabled users included)."""
    folded, role = normalise_name(name), _role(role)
    check_password_policy(password)
    encoded = hash_password(password)
    try:
        with store.session() as s:
            if s.scalars(select(WebUser.id).where(WebUser.name == folded)).first():
                raise OperationRefused(f"dashboard user {folded!r} exists")
            row = WebUser(name=folded, role=role, password_hash=encoded, created_at=now())
            s.add(row)
            s.flush()
            record = _record(row)
    except IntegrityError as exc:  # created by somebody else in between
        raise OperationRefused(f"dashboard user {folded!r} exists") from exc
    log.info("dashboard user %s created (%s)", folded, role)
    return record


def list_users(store: Store, *, at: float | None = None) -> list[UserRecord]:
    """Every user by name, with how many sessions each has that have not reached their
    absolute end (idle ones are counted until they are next looked up)."""
    t = now() if at is None else at
    live = (select(WebSession.user_id, func.count().label("n"),
                   func.max(WebSession.last_seen).label("seen"))
            .where(WebSession.expires_at > t).group_by(WebSession.user_id).subquery())
    q = (select(WebUser, live.c.n, live.c.seen)
         .outerjoin(live, live.c.user_id == WebUser.id).order_by(WebUser.name))
    with store.session() as s:
        return [_record(row, int(n or 0), seen) for row, n, seen in s.execute(q)]


def set_disabled(store: Store, name: str, disabled: bool = True) -> UserRecord:
    """Disable (ending every session) or re-enable a user; the row stays for the audit."""
    with store.session() as s:
        row = _user(s, name)
        row.disabled_at = (row.disabled_at or now()) if disabled else None
        ended = _end_sessions(s, row.id) if disabled else 0
        record = _record(row)
    log.info("dashboard user %s %s (%d sessions ended)", record.name,
             "disabled" if disabled else "enabled", ended)
    return record


def set_password(store: Store, name: str, password: str) -> UserRecord:
    """A new password; every session of the user ends (a stolen one included)."""
    check_password_policy(password)
    encoded = hash_password(password)
    with store.session() as s:
        row = _user(s, name)
        row.password_hash = encoded
        ended = _end_sessions(s, row.id)
        record = _record(row)
    log.info("dashboard user %s: password changed (%d sessions ended)", record.name, ended)
    return record


def set_role(store: Store, name: str, role: str) -> UserRecord:
    """A new role; sessions end so that no page keeps the old role's rights."""
    role = _role(role)
    with store.session() as s:
        row = _user(s, name)
        row.role = role
        ended = _end_sessions(s, row.id)
        record = _record(row)
    log.info("dashboard user %s: role %s (%d sessions ended)", record.name, role, ended)
    return record


def check_login(store: Store, name: str, password: str) -> UserRecord | None:
    """The user if ``password`` is theirs and they are enabled, else None. Always costs
    one scrypt, so that timing does not reveal which names exist."""
    try:
        folded = normalise_name(name)
    except UsageError:
        folded = ""
    row = None
    if folded:
        with store.session() as s:
            row = s.scalars(select(WebUser).where(WebUser.name == folded)).first()
    # scrypt runs outside any transaction: 0.1 s of CPU must not hold a database lock
    encoded = row.password_hash if row is not None else _dummy_hash()
    ok = verify_password(password, encoded)
    if row is None or not ok or row.disabled_at is not None:
        return None
    if needs_rehash(encoded):
        fresh = hash_password(password)
        with store.session() as s:
            s.execute(update(WebUser).where(WebUser.id == row.id,
                                            WebUser.password_hash == encoded)
                      .values(password_hash=fresh))
    return _record(row)

__all__ = ["UserRecord", "check_login", "check_password_policy", "create_user",
           "generate_password", "hash_password", "list_users", "needs_rehash",
           "normalise_name", "set_disabled", "set_password", "set_role", "verify_password"]
