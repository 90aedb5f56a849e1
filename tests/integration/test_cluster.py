"""Masters share partitions through leases in the store (SQLite and PostgreSQL)."""

from __future__ import annotations

import time

import pytest

from poolwarden.distributed.cluster import Cluster, rendezvous
from poolwarden.evaluate.state import SavedCheck
from poolwarden.messages import State
from poolwarden.store.checkstate import CheckStates
from poolwarden.store.db import Store
from poolwarden.store.lease import LeaseLost, StoreLease, renew_many


def test_rendezvous_is_stable_and_moves_only_what_it_must() -> None:
    two = rendezvous(["a", "b"], 64)
    assert set(two.values()) == {"a", "b"}
    assert rendezvous(["b", "a"], 64) == two  # order of discovery does not matter
    three = rendezvous(["a", "b", "c"], 64)
    moved = [p for p in range(64) if three[p] != two[p]]
    assert all(three[p] == "c" for p in moved)  # only to the newcomer
    assert 10 <= len(moved) <= 32
    assert rendezvous([], 4) == {}


def test_two_members_split_the_partitions_and_one_alone_takes_all(store: Store) -> None:
    a = Cluster(store, 8, ttl=5.0, member_id="a")
    b = Cluster(store, 8, ttl=5.0, member_id="b")
    assert a.tick().owned == frozenset(range(8))  # alone: everything
    first = b.tick()
    assert first.owned == frozenset()  # b's share is still a's lease
    want_b = {p for p, m in rendezvous(["a", "b"], 8).items() if m == "b"}
    step = a.tick()
    assert step.release == frozenset(want_b)  # a is told what to give up...
    for p in step.release:
        a.release(p)  # ...after saving it
    assert b.tick().gained == frozenset(want_b)
    assert a.owned | b.owned == frozenset(range(8))
    assert not a.owned & b.owned
    b.leave()
    assert a.tick().owned == frozenset(range(8))  # b left: a takes it all back at once


def test_a_lost_partition_refuses_fenced_writes(store: Store) -> None:
    a = Cluster(store, 2, ttl=0.3, member_id="a")
    a.tick()
    fence = a.fence(0)
    row = (SavedCheck("xs1", "snmp/agent", State.OK, True, 1, 0, False, 0, 1.0, 1.0), 3,
           "ok", None)
    states = CheckStates(store)
    assert states.save(0, [row], fence) == 1
    time.sleep(0.4)  # a stalls past its lease; b takes the partition over
    b = Cluster(store, 2, ttl=5.0, member_id="b")
    b.tick()
    assert 0 in b.owned
    with pytest.raises(LeaseLost):
        states.save(0, [row], fence)  # the stale owner cannot overwrite b's states
    assert a.renew() == frozenset({0, 1})  # and learns it at its next renewal
    with pytest.raises(LeaseLost):
        a.fence(0)


def test_renew_many_keeps_only_leases_still_held(store: Store) -> None:
    mine = [StoreLease(store, f"partition:{p}", holder="m", ttl=5.0) for p in range(3)]
    for lease in mine:
        lease.acquire()
    other = StoreLease(store, "partition:1", holder="x", ttl=5.0)
    with store.session() as s:  # partition 1 expired and was taken over by "x"
        from poolwarden.store.models import Lease

        row = s.get(Lease, "partition:1")
        assert row is not None
        row.expires_at = 0.0
    other.acquire()
    assert renew_many(store, mine, 5.0) == {"partition:0", "partition:2"}
    assert mine[1].token is None
    assert other.current_holder() == "x"
