"""The pool lease: exclusive, expiring, fenced, and quick to recover from a dead holder."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from poolwarden.store.db import Store
from poolwarden.store.lease import LeaseHeld, LeaseLost, StoreLease


def test_second_holder_is_refused_with_the_holder_named(store: Store) -> None:
    a = StoreLease(store, "pool:p1", holder="elsewhere/1/a", ttl=30)
    b = StoreLease(store, "pool:p1", holder="elsewhere/2/b", ttl=30)
    assert a.acquire() == 1
    with pytest.raises(LeaseHeld, match="elsewhere/1/a"):
        b.acquire()
    assert b.token is None


def test_leases_of_different_pools_are_independent(store: Store) -> None:
    StoreLease(store, "pool:p1", holder="elsewhere/1/a").acquire()
    assert StoreLease(store, "pool:p2", holder="elsewhere/2/b").acquire() == 1


def test_expired_lease_is_taken_over_with_a_higher_token(store: Store) -> None:
    a = StoreLease(store, "pool:p1", holder="elsewhere/1/a", ttl=0.05)
    a.acquire()
    time.sleep(0.1)
    b = StoreLease(store, "pool:p1", holder="elsewhere/2/b", ttl=30)
    assert b.acquire() == 2
    # The old holder finds out at its next renewal and must stop acting.
    with pytest.raises(LeaseLost):
        a.renew()
    b.renew()


def test_release_frees_the_lease_at_once(store: Store) -> None:
    a = StoreLease(store, "pool:p1", holder="elsewhere/1/a", ttl=30)
    a.acquire()
    a.release()
    assert a.current_holder() is None
    assert StoreLease(store, "pool:p1", holder="elsewhere/2/b").acquire() == 2


def test_renew_extends_the_expiry(store: Store) -> None:
    a = StoreLease(store, "pool:p1", holder="elsewhere/1/a", ttl=0.3)
    a.acquire()
    for _ in range(4):
        time.sleep(0.1)
        a.renew()
    with pytest.raises(LeaseHeld):
        StoreLease(store, "pool:p1", holder="elsewhere/2/b").acquire()


def test_lease_of_a_dead_local_process_is_taken_over_without_waiting(store: Store) -> None:
    # A process that died (kill -9) on this machine must not block a restart for a TTL.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    import socket

    holder = f"{socket.gethostname()}/{dead.stdout.strip()}/x"
    StoreLease(store, "pool:p1", holder=holder, ttl=3600).acquire()
    assert StoreLease(store, "pool:p1", ttl=30).acquire() == 2


def test_lease_of_a_live_local_process_is_respected(store: Store) -> None:
    import os
    import socket

    holder = f"{socket.gethostname()}/{os.getppid()}/x"  # our parent is alive
    StoreLease(store, "pool:p1", holder=holder, ttl=3600).acquire()
    with pytest.raises(LeaseHeld):
        StoreLease(store, "pool:p1", ttl=30).acquire()


def test_migrations_are_idempotent(store_url: str) -> None:
    Store.open(store_url).close()
    s = Store.open(store_url)  # second upgrade to head is a no-op
    StoreLease(s, "pool:x", holder="h/1/a").acquire()
    s.close()


def test_concurrent_first_opens_migrate_once(store_url: str) -> None:
    # A service and a CLI opening a fresh store together must not both create tables.
    import threading

    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            Store.open(store_url).close()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_it, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "migrations deadlocked"
    assert errors == []
