"""The last known state of each pool, for people (API, dashboard, chat) — not for action.

Remediation always reads the pool afresh through its driver; people want the pool page to
answer at once. The cache keeps, per pool, the last snapshot, when it was read and the
last error, and is refreshed by the service on a timer and after every remediation. It
is thread-safe: refreshes run in worker threads, readers are request handlers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from poolwarden.errors import PoolwardenError
from poolwarden.hypervisor.base import PoolDriver, PoolSnapshot

log = logging.getLogger("poolwarden.hypervisor")


@dataclass(frozen=True, slots=True)
class CachedPool:
    """What is known of one pool: ``snapshot`` is None until a read succeeded."""

    name: str
    snapshot: PoolSnapshot | None = None
    read_at: float | None = None
    error: str = ""
    error_at: float | None = None


class PoolCache:
    def __init__(self, pools: Iterable[str], driver_for: Callable[[str], PoolDriver],
                 clock: Callable[[], float] = time.time) -> None:
        self._driver_for, self._clock = driver_for, clock
        self._lock = threading.Lock()
        self._pools = {name: CachedPool(name) for name in pools}

    def names(self) -> list[str]:
        return list(self._pools)

    def get(self, pool: str) -> CachedPool | None:
        with self._lock:
            return self._pools.get(pool)

    def put(self, pool: str, snapshot: PoolSnapshot) -> None:
        """Record a snapshot somebody else read (a remediation's read-back)."""
        with self._lock:
            self._pools[pool] = CachedPool(pool, snapshot, self._clock())

    def refresh(self, pool: str) -> CachedPool:
        """Read ``pool`` through its driver (blocking); a failure is kept, not raised, and
        the previous snapshot stays (marked by ``error``) so pages still show something."""
        try:
            driver = self._driver_for(pool)
            try:
                snap = driver.snapshot()
            finally:
                driver.close()
        except PoolwardenError as exc:
            log.warning("pool %s: cannot read it: %s", pool, exc)
            with self._lock:
                old = self._pools.get(pool, CachedPool(pool))
                entry = CachedPool(pool, old.snapshot, old.read_at, str(exc), self._clock())
                self._pools[pool] = entry
            return entry
        self.put(pool, snap)
        return self.get(pool) or CachedPool(pool, snap)

    def refresh_all(self) -> None:
        for name in self.names():
            self.refresh(name)


__all__ = ["CachedPool", "PoolCache"]
