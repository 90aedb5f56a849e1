"""Exclusive, expiring leases with fencing tokens, kept in the store.

One remediation per pool at a time, across processes and (later) across masters: the
holder of ``pool:<name>`` is the only one allowed to act on that pool. Every acquisition
bumps the token; renewals are compare-and-swap on (holder, token), so a process that lost
its lease (paused, partitioned) finds out at its next renewal instead of acting on.

A holder that died leaves its lease until it expires. When the holder ran on this same
machine and its process is gone, the lease is taken over at once: ``kill -9`` followed by
a restart must not wait a whole TTL.
"""

from __future__ import annotations

import os
import socket
import uuid

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from poolwarden.errors import TransientError
from poolwarden.store.db import Store, now
from poolwarden.store.models import Lease


class LeaseHeld(TransientError):
    """Somebody else holds the lease; try again later (the work is queued, not dropped)."""


class LeaseLost(TransientError):
    """We held the lease but it was taken over: stop acting at once."""


def make_holder() -> str:
    """``host/pid/nonce``: unique per process, and says where to check liveness."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


def holder_is_dead_here(holder: str) -> bool:
    """True when ``holder`` ran on this machine and its process is gone."""
    host, _, rest = holder.partition("/")
    pid_s = rest.partition("/")[0]
    if host != socket.gethostname() or not pid_s.isdigit():
        return False
    pid = int(pid_s)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by someone else
        return False
    return False


class StoreLease:
    """A lease named ``name`` taken by ``holder`` for ``ttl`` seconds at a time."""

    def __init__(self, store: Store, name: str, *, holder: str | None = None,
                 ttl: float = 60.0) -> None:
        self.store, self.name, self.ttl = store, name, ttl
        self.holder = holder or make_holder()
        self.token: int | None = None

    def acquire(self) -> int:
        """Take the lease or raise :class:`LeaseHeld` naming the current holder."""
        t = now()
        with self.store.session() as s:
            row = s.get(Lease, self.name)
            if row is None:
                s.add(Lease(name=self.name, holder=self.holder, token=1, expires_at=t + self.ttl))
                try:
                    s.flush()
                except IntegrityError as exc:  # another process inserted first
                    raise LeaseHeld(f"lease {self.name} was just taken") from exc
                self.token = 1
                return 1
            free = row.expires_at < t or row.holder == self.holder
            if not free and not holder_is_dead_here(row.holder):
                raise LeaseHeld(
                    f"lease {self.name} is held by {row.holder} "
                    f"for {row.expires_at - t:.0f} s more"
                )
            new = row.token + 1
            res = s.execute(
                update(Lease)
                .where(Lease.name == self.name, Lease.token == row.token)
                .values(holder=self.holder, token=new, expires_at=t + self.ttl)
            )
            if res.rowcount != 1:  # type: ignore[attr-defined]
                raise LeaseHeld(f"lease {self.name} was just taken")
            self.token = new
            return new

    def renew(self) -> None:
        """Extend the lease; :class:`LeaseLost` if it is no longer ours."""
        if self.token is None:
            raise LeaseLost(f"lease {self.name} was never acquired")
        with self.store.session() as s:
            res = s.execute(
                update(Lease)
                .where(Lease.name == self.name, Lease.token == self.token,
                       Lease.holder == self.holder)
                .values(expires_at=now() + self.ttl)
            )
            if res.rowcount != 1:  # type: ignore[attr-defined]
                self.token = None
                raise LeaseLost(f"lease {self.name} was taken over")

    def release(self) -> None:
        """Give the lease up (expire it now) if it is still ours."""
        if self.token is None:
            return
        with self.store.session() as s:
            s.execute(
                update(Lease)
                .where(Lease.name == self.name, Lease.token == self.token,
                       Lease.holder == self.holder)
                .values(expires_at=0.0)
            )
        self.token = None

    def current_holder(self) -> str | None:
        with self.store.session() as s:
            row = s.scalar(select(Lease).where(Lease.name == self.name))
            return row.holder if row is not None and row.expires_at >= now() else None


def renew_many(store: Store, leases: list[StoreLease], ttl: float) -> set[str]:
    """Renew several leases of one holder in one statement; the names still held.

    A master renews its partitions every second: one UPDATE instead of one transaction
    per partition. A lease is renewed only where both its holder and its fencing token
    are still ours, exactly as :meth:`StoreLease.renew`.
    """
    mine = [lease for lease in leases if lease.token is not None]
    if not mine:
        return set()
    held: set[str] = set()
    with store.session() as s:
        by_token: dict[int, list[str]] = {}
        for lease in mine:
            assert lease.token is not None
            by_token.setdefault(lease.token, []).append(lease.name)
        for token, names in by_token.items():
            res = s.execute(update(Lease).where(
                Lease.name.in_(names), Lease.holder == mine[0].holder, Lease.token == token)
                .values(expires_at=now() + ttl).returning(Lease.name))
            held.update(res.scalars())
    for lease in mine:
        if lease.name not in held:
            lease.token = None
    return held
