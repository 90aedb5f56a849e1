"""In-process bus: one bounded asyncio queue and one consumer task per subscription.

Bounded queues give backpressure: a slow stage slows its producers down instead of
letting memory grow without limit. A handler that raises loses that batch only (logged),
never the consumer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from poolwarden.bus.base import Handler

log = logging.getLogger(__name__)
_STOP = object()


@dataclass
class _Subscription:
    name: str
    handler: Handler
    queue: asyncio.Queue[Any]
    task: asyncio.Task[None] | None = None
    errors: int = field(default=0)


class MemoryBus:
    def __init__(self, *, maxsize: int = 1000) -> None:
        self.maxsize = maxsize
        self._subs: dict[str, list[_Subscription]] = {}

    def subscribe(self, subject: str, handler: Handler, *, name: str) -> None:
        self._subs.setdefault(subject, []).append(
            _Subscription(name, handler, asyncio.Queue(self.maxsize)))

    async def publish(self, subject: str, batch: Sequence[Any]) -> None:
        if not batch:
            return
        for sub in self._subs.get(subject, ()):
            await sub.queue.put(batch)

    async def start(self) -> None:
        for subs in self._subs.values():
            for sub in subs:
                if sub.task is None:
                    sub.task = asyncio.create_task(self._consume(sub), name=f"bus:{sub.name}")

    async def _consume(self, sub: _Subscription) -> None:
        while True:
            batch = await sub.queue.get()
            if batch is _STOP:
                return
            try:
                await sub.handler(batch)
            except Exception:  # one bad batch must not stop the stage
                sub.errors += 1
                log.exception("bus: subscriber %s failed on a batch", sub.name)

    async def close(self) -> None:
        for subs in self._subs.values():
            for sub in subs:
                if sub.task is not None:
                    await sub.queue.put(_STOP)
        for subs in self._subs.values():
            for sub in subs:
                if sub.task is not None:
                    await sub.task
                    sub.task = None

    def depths(self) -> dict[str, int]:
        return {s.name: s.queue.qsize() for subs in self._subs.values() for s in subs}

    def errors(self) -> dict[str, int]:
        return {s.name: s.errors for subs in self._subs.values() for s in subs}
