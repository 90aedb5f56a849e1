"""Which master owns which partition: membership and partition leases in PostgreSQL.

Every master holds a ``member:<id>`` lease (its heartbeat) and computes, from the live
members, the *desired* owner of each partition by rendezvous hashing (pure: every master
computes the same answer; when a member comes or goes only the partitions it gains or
loses move). A master acquires the free leases of partitions it should own and gives up
the ones it should not — after the caller has stopped working on them and saved their
state. The leases are the fenced ones of remediation (``store.lease``): a master that lost
a lease finds out at its next renewal, and its fenced writes are refused meanwhile.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select

from poolwarden.store.checkstate import Fence
from poolwarden.store.db import Store, now
from poolwarden.store.lease import (
    LeaseHeld,
    LeaseLost,
    StoreLease,
    holder_is_dead_here,
    make_holder,
    renew_many,
)
from poolwarden.store.models import Lease

log = logging.getLogger("poolwarden.cluster")
MEMBER, PARTITION = "member:", "partition:"


def rendezvous(members: Sequence[str], partitions: int) -> dict[int, str]:
    """partition → its desired owner among ``members`` (highest random weight)."""
    if not members:
        return {}

    def weight(member: str, p: int) -> bytes:
        return hashlib.blake2b(f"{member}|{p}".encode(), digest_size=8).digest()

    return {p: max(members, key=lambda m: weight(m, p)) for p in range(partitions)}


@dataclass(frozen=True)
class Assignment:
    """What one tick decided. ``lost``: taken over or expired — stop at once, nothing of
    it may be written any more. ``release``: wanted by another member — stop, save, then
    :meth:`Cluster.release`."""

    owned: frozenset[int]
    gained: frozenset[int] = frozenset()
    lost: frozenset[int] = frozenset()
    release: frozenset[int] = frozenset()
    members: tuple[str, ...] = ()


@dataclass
class Cluster:
    store: Store
    partitions: int
    ttl: float = 5.0
    member_id: str = field(default_factory=make_holder)

    def __post_init__(self) -> None:
        self._member = StoreLease(self.store, MEMBER + self.member_id, holder=self.member_id,
                                  ttl=self.ttl)
        self._leases = {p: StoreLease(self.store, f"{PARTITION}{p}", holder=self.member_id,
                                      ttl=self.ttl) for p in range(self.partitions)}
        self._owned: set[int] = set()
        self._lost: set[int] = set()
        #: renew() runs on its own timer in a worker thread; rebalance() in another
        self._lock = threading.RLock()

    @property
    def owned(self) -> frozenset[int]:
        return frozenset(self._owned)

    def members(self) -> list[str]:
        """Live members: unexpired member leases whose process is not known dead."""
        with self.store.session() as s:
            rows = s.scalars(select(Lease).where(Lease.name.like(MEMBER + "%"),
                                                 Lease.expires_at >= now())).all()
        return sorted(r.holder for r in rows if r.holder == self.member_id
                      or not holder_is_dead_here(r.holder))

    def _heartbeat(self) -> None:
        try:
            if self._member.token is None:
                self._member.acquire()
            else:
                self._member.renew()
        except (LeaseLost, LeaseHeld):
            self._member.token = None
            self._member.acquire()

    def renew(self) -> frozenset[int]:
        """Heartbeat and renew every owned lease (blocking, cheap: run it on its own timer,
        never behind slow work); the partitions just lost, also kept for
        :meth:`rebalance` to report."""
        with self._lock:
            self._heartbeat()
            held = renew_many(self.store, [self._leases[p] for p in self._owned], self.ttl)
            lost = {p for p in self._owned if self._leases[p].name not in held}
            self._owned -= lost
            self._lost |= lost
            return frozenset(lost)

    def rebalance(self) -> Assignment:
        """Decide from the live members, acquire what is free and ours, and say what was
        lost (since the last call) and what to give up."""
        with self._lock:
            if self._member.token is None:
                self._heartbeat()
            members = self.members()
            desired = {p for p, m in rendezvous(members, self.partitions).items()
                       if m == self.member_id}
            gained: set[int] = set()
            for p in sorted(desired - self._owned):
                try:
                    self._leases[p].acquire()
                except LeaseHeld:
                    continue
                gained.add(p)
            self._owned |= gained
            lost, self._lost = self._lost, set()
            if lost or gained:
                log.warning("partitions: gained %s, lost %s; now %d of %d (members: %d)",
                            sorted(gained), sorted(lost), len(self._owned), self.partitions,
                            len(members))
            return Assignment(frozenset(self._owned), frozenset(gained), frozenset(lost),
                              frozenset(self._owned - desired), tuple(members))

    def tick(self) -> Assignment:
        """:meth:`renew` then :meth:`rebalance` (one process doing both in turn)."""
        self.renew()
        return self.rebalance()

    def fence(self, partition: int) -> Fence:
        """What a write for ``partition`` must be fenced by; LeaseLost if not ours."""
        lease = self._leases[partition]
        token = lease.token
        if partition not in self._owned or token is None:
            raise LeaseLost(f"partition {partition} is not owned by {self.member_id}")
        return Fence(lease.name, self.member_id, token)

    def release(self, partition: int) -> None:
        """Give a partition up (after its work stopped and its state was saved)."""
        with self._lock:
            self._leases[partition].release()
            self._owned.discard(partition)

    def leave(self) -> None:
        """Graceful stop: every partition and the membership go at once."""
        with self._lock:
            for p in sorted(self._owned):
                self.release(p)
            self._member.release()


__all__ = ["Assignment", "Cluster", "rendezvous"]
