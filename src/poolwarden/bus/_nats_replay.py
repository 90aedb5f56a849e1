"""The ordered, bounded buffer behind ``NatsTransport.publish_results``.

One task publishes everything, oldest first: a batch is never overtaken by a newer one,
whether the bus is up (the buffer is then almost always empty) or coming back after an
outage (the buffer replays first). Each entry keeps its message id across retries, so
JetStream's duplicate window discards the second copy of a batch whose ack was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

log = logging.getLogger("poolwarden.bus.nats")


def _future() -> asyncio.Future[bool]:
    return asyncio.get_running_loop().create_future()


@dataclass(eq=False)
class Pending:
    """An encoded batch waiting for the server's acknowledgement."""

    subject: str
    data: bytes
    msg_id: str
    born: float = field(default_factory=time.monotonic)
    done: asyncio.Future[bool] = field(default_factory=_future)

    def settle(self, ok: bool) -> None:
        if not self.done.done():
            self.done.set_result(ok)


class ReplayBuffer:
    """``publish`` raises on failure; ``permanent(exc)`` says a retry cannot help (the
    entry is then dropped and counted instead of blocking the queue)."""

    def __init__(self, publish: Callable[[Pending], Awaitable[None]], *,
                 is_up: Callable[[], bool], wait_up: Callable[[float], Awaitable[bool]],
                 permanent: Callable[[BaseException], bool],
                 retry: tuple[type[BaseException], ...], max_items: int,
                 max_age: float) -> None:
        self._publish, self._is_up, self._wait_up = publish, is_up, wait_up
        self._permanent, self._retry = permanent, retry
        self.max_items, self.max_age = max_items, max_age
        self.dropped = 0
        self._queue: deque[Pending] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="nats:results")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def add(self, entries: Iterable[Pending]) -> None:
        self._queue.extend(entries)
        self.prune()
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def prune(self) -> None:
        """Drop the oldest entries beyond ``max_items`` or older than ``max_age``."""
        dropped = 0
        horizon = time.monotonic() - self.max_age
        while self._queue and (len(self._queue) > self.max_items
                               or self._queue[0].born < horizon):
            self._queue.popleft().settle(False)
            dropped += 1
        if dropped:
            self.dropped += dropped
            log.warning("nats: dropped %d buffered result batches (buffer full or too old)",
                        dropped)

    async def _run(self) -> None:
        backoff, failing = 0.1, False
        while True:
            self.prune()
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            if not self._is_up():
                await self._wait_up(1.0)
                continue
            head = self._queue[0]
            try:
                await self._publish(head)
                ok = True
            except self._retry as exc:
                if not self._permanent(exc):
                    if not failing:
                        log.warning("nats: cannot publish results (%s); buffering",
                                    type(exc).__name__)
                    failing = True
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                log.error("nats: a result batch was refused for good (%s); dropped", exc)
                self.dropped += 1
                ok = False
            except Exception:  # a bug here must not stop every later batch
                log.exception("nats: publishing results failed unexpectedly")
                await asyncio.sleep(2.0)
                continue
            if failing:
                log.info("nats: publishing results again (%d buffered)", len(self._queue) - 1)
            backoff, failing = 0.1, False
            if self._queue and self._queue[0] is head:  # prune may have dropped it meanwhile
                self._queue.popleft()
            head.settle(ok)
