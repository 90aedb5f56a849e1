"""The transport's pieces that need no server: the ordered replay buffer, the log limiter,
credentials kept out of logged URLs."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest

from poolwarden.bus._nats_receive import LogLimiter, safe_url
from poolwarden.bus._nats_replay import Pending, ReplayBuffer


async def eventually(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


class _Refused(Exception):
    err_code = 10054


def test_replay_buffer_keeps_order_bounds_and_skips_permanent_failures() -> None:
    async def main() -> None:
        up = False
        sent: list[str] = []

        async def publish(entry: Pending) -> None:
            if entry.msg_id == "poison":
                raise _Refused
            sent.append(entry.msg_id)

        async def wait_up(timeout: float) -> bool:
            await asyncio.sleep(min(timeout, 0.02))
            return up

        buf = ReplayBuffer(publish, is_up=lambda: up, wait_up=wait_up,
                           permanent=lambda exc: isinstance(exc, _Refused),
                           retry=(_Refused, OSError), max_items=3, max_age=0.5)
        buf.start()
        entries = [Pending("s", b"", f"m{i}") for i in range(5)]
        buf.add(entries)
        assert len(buf) == 3  # the two oldest are dropped, counted, settled as failed
        assert buf.dropped == 2
        assert [e.done.result() for e in entries[:2]] == [False, False]
        await asyncio.sleep(0.6)  # older than max_age: dropped too
        buf.prune()
        assert len(buf) == 0
        assert buf.dropped == 5
        buf.add([Pending("s", b"", "m5"), Pending("s", b"", "poison"), Pending("s", b"", "m6")])
        up = True
        buf.wake()
        await eventually(lambda: len(buf) == 0, 2)
        assert sent == ["m5", "m6"]  # in order, the refused one skipped and counted
        assert buf.dropped == 6
        await buf.stop()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_log_limiter_and_safe_url(caplog: pytest.LogCaptureFixture) -> None:
    limiter = LogLimiter(logging.getLogger("test.limiter"), burst=3, window=60)
    with caplog.at_level(logging.WARNING, "test.limiter"):
        for i in range(50):
            limiter.warning("rejected %d", i)
    assert len(caplog.records) == 3
    assert safe_url("nats://admin:s3cret@nats.example:4222") == "nats://nats.example:4222"
    assert safe_url("tls://tok3n@10.0.0.1") == "tls://10.0.0.1"
    assert "s3cret" not in safe_url("nats://admin:s3cret@[::1")
