"""Readings history for charts, written in batches.

Every check result carries a number (a sensor's reading, a plugin's first perfdata
value); field reports put a site at thousands of them per second. One INSERT per reading
would make the store the bottleneck, so the writer buffers them and writes each batch
with a single executemany: one round trip and one transaction per ``batch_size``
readings, or per ``max_delay`` seconds when readings trickle in.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import Table, insert, select

from poolwarden.messages import CheckResult, State
from poolwarden.store.db import Store
from poolwarden.store.models import Sample

SAMPLE = cast(Table, Sample.__table__)


def reading_value(result: CheckResult) -> float | None:
    """The number a chart shows: the sensor's reading, else the first perfdata value."""
    if result.reading is not None and result.reading.value is not None:
        return result.reading.value
    return result.perfdata[0].value if result.perfdata else None


class SampleWriter:
    """Buffers readings and writes them in batches; ``flush()`` before shutdown.

    ``add`` flushes when the buffer is full or its oldest reading has waited
    ``max_delay`` seconds; the service also calls ``flush`` on a timer so that a quiet
    check's readings never wait longer than that. Results without any number are kept
    too (value NULL): the state history is worth charting as well. Thread-safe.
    """

    def __init__(self, store: Store, batch_size: int = 500, max_delay: float = 5.0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.store, self.batch_size, self.max_delay = store, batch_size, max_delay
        self._clock = clock
        self._buffer: list[dict[str, Any]] = []
        self._oldest = 0.0
        self._lock = threading.Lock()
        #: readings written since creation (for /metrics)
        self.written = 0

    def add(self, result: CheckResult) -> None:
        row = {"host": result.host, "check": result.check, "ts": result.ts,
               "value": reading_value(result), "state": int(result.state)}
        with self._lock:
            if not self._buffer:
                self._oldest = self._clock()
            self._buffer.append(row)
            due = (len(self._buffer) >= self.batch_size
                   or self._clock() - self._oldest >= self.max_delay)
        if due:
            self.flush()

    def pending(self) -> int:
        """Readings buffered, not yet written."""
        return len(self._buffer)

    def flush(self) -> int:
        """Write the buffered readings in batches of ``batch_size``; returns how many."""
        with self._lock:
            rows, self._buffer = self._buffer, []
        for start in range(0, len(rows), self.batch_size):
            with self.store.engine.begin() as conn:
                conn.execute(insert(SAMPLE), rows[start:start + self.batch_size])
        self.written += len(rows)
        return len(rows)

    def __enter__(self) -> SampleWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()

    def history(self, host: str, check: str, since: float,
                until: float | None = None) -> list[tuple[float, float | None, State]]:
        """``(ts, value, state)`` of one check from ``since`` on, oldest first.

        Only what was flushed, and only the live table (archived samples are older than
        the retention period: charts do not reach that far back).
        """
        q = (select(SAMPLE.c.ts, SAMPLE.c.value, SAMPLE.c.state)
             .where(SAMPLE.c.host == host, SAMPLE.c.check == check, SAMPLE.c.ts >= since)
             .order_by(SAMPLE.c.ts, SAMPLE.c.id))
        if until is not None:
            q = q.where(SAMPLE.c.ts < until)
        with self.store.engine.connect() as conn:
            return [(ts, value, State(state)) for ts, value, state in conn.execute(q)]
