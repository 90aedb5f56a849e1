"""``store.confirmations.first_use``: once per nonce for every process on the store."""

from __future__ import annotations

import threading
import time

from sqlalchemy import select

from poolwarden.store.confirmations import KEEP_AFTER_EXPIRY, MAX_NONCE, first_use
from poolwarden.store.db import Store
from poolwarden.store.models import UsedConfirmation


def nonces(store: Store) -> list[str]:
    with store.session() as s:
        return sorted(s.scalars(select(UsedConfirmation.nonce)))


def test_a_nonce_is_used_once_by_any_store_on_the_database(store: Store,
                                                           store_url: str) -> None:
    expires = time.time() + 300
    assert first_use(store, "n-1", expires, "slack:U1 (ann)")
    assert not first_use(store, "n-1", expires, "slack:U1 (ann)")
    other = Store.open(store_url)  # another master, or this one after a restart
    try:
        assert not first_use(other, "n-1", expires)
        assert first_use(other, "n-2", expires)
    finally:
        other.close()
    assert not first_use(store, "n-2", expires)
    with store.session() as s:
        row = s.get(UsedConfirmation, "n-1")
        assert row is not None
        assert row.used_by == "slack:U1 (ann)"
        assert row.expires_at == expires


def test_nonces_poolwarden_never_issues_count_as_used(store: Store) -> None:
    assert not first_use(store, "", time.time() + 300)
    assert not first_use(store, "x" * (MAX_NONCE + 1), time.time() + 300)
    assert first_use(store, "x" * MAX_NONCE, time.time() + 300)


def test_rows_are_pruned_a_while_after_their_expiry(store: Store) -> None:
    t = time.time()
    assert first_use(store, "long-gone", t - KEEP_AFTER_EXPIRY - 10)
    assert first_use(store, "just-expired", t - 10)  # kept: a lagging clock may still see it
    assert first_use(store, "fresh", t + 300)
    assert nonces(store) == ["fresh", "just-expired"]
    assert not first_use(store, "just-expired", t - 10)


def race(stores: list[Store], nonce: str, clicks: int = 4) -> list[bool]:
    """``clicks`` threads, spread over ``stores``, using ``nonce`` at the same moment."""
    start = threading.Barrier(clicks)
    results: list[bool] = []

    def click(s: Store) -> None:
        start.wait()
        results.append(first_use(s, nonce, time.time() + 300))

    threads = [threading.Thread(target=click, args=(stores[i % len(stores)],))
               for i in range(clicks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


def test_simultaneous_uses_from_two_stores_let_exactly_one_through(store: Store,
                                                                   store_url: str) -> None:
    other = Store.open(store_url)
    try:
        for round_ in range(5):
            assert sorted(race([store, other], f"race-{round_}")) == [False, False, False,
                                                                      True]
    finally:
        other.close()
