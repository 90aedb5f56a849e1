"""The in-process bus: ordered delivery, fan-out, backpressure, isolation of failures."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from poolwarden.bus.memory import MemoryBus


def test_batches_reach_every_subscriber_in_order() -> None:
    got: dict[str, list[Any]] = {"a": [], "b": []}

    async def main() -> None:
        bus = MemoryBus()

        def sink(name: str) -> Any:
            async def handle(batch: Sequence[Any]) -> None:
                got[name].extend(batch)
            return handle

        bus.subscribe("results", sink("a"), name="a")
        bus.subscribe("results", sink("b"), name="b")
        await bus.start()
        for i in range(50):
            await bus.publish("results", [i, i + 0.5])
        await bus.publish("other", ["ignored"])
        await bus.close()

    asyncio.run(main())
    expected = [x for i in range(50) for x in (i, i + 0.5)]
    assert got == {"a": expected, "b": expected}


def test_a_slow_subscriber_applies_backpressure() -> None:
    async def main() -> int:
        bus = MemoryBus(maxsize=2)
        release = asyncio.Event()

        async def slow(batch: Sequence[Any]) -> None:
            await release.wait()

        bus.subscribe("results", slow, name="slow")
        await bus.start()
        publisher = asyncio.ensure_future(
            asyncio.gather(*(bus.publish("results", [i]) for i in range(10))))
        await asyncio.sleep(0.05)
        blocked = not publisher.done()
        depth = bus.depths()["slow"]
        release.set()
        await publisher
        await bus.close()
        assert blocked
        return depth

    assert asyncio.run(main()) == 2


def test_a_failing_handler_loses_one_batch_not_the_stage() -> None:
    seen: list[int] = []

    async def main() -> dict[str, int]:
        bus = MemoryBus()

        async def picky(batch: Sequence[int]) -> None:
            if batch[0] == 3:
                raise ValueError("bad batch")
            seen.extend(batch)

        bus.subscribe("results", picky, name="picky")
        await bus.start()
        for i in range(6):
            await bus.publish("results", [i])
        await bus.close()
        return bus.errors()

    assert asyncio.run(main()) == {"picky": 1}
    assert seen == [0, 1, 2, 4, 5]
