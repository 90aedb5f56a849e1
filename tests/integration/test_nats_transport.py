"""NatsTransport against real NATS JetStream servers.

Most tests use the machine's server (127.0.0.1:4222) with a unique subject/stream prefix per
test and delete their streams afterwards; the restart test runs a private nats-server on
its own port and store directory, so the shared server is never disturbed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import nats
import nats.js.errors
import pytest

from nats_server import PrivateNats, free_port
from poolwarden.bus.nats import Delivery, NatsTransport
from poolwarden.distributed.wire import (
    Heartbeat,
    ResultBatch,
    WireResult,
    WorkItem,
    encode,
)
from poolwarden.errors import ConnectionFailed
from poolwarden.messages import CheckResult, State

SHARED = "nats://127.0.0.1:4222"


def run(coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def work(i: int, zone: str = "dc1") -> WorkItem:
    now = time.time()
    return WorkItem(job=f"snmp/xs{i}", zone=zone, host=f"xs{i}", partition=0, issued_at=now,
                    deadline=now + 60, params={"address": f"10.0.0.{i % 250}"})


def results(i: int, partition: int = 0) -> ResultBatch:
    r = CheckResult(f"xs{i}", "snmp/agent", State.OK, f"batch {i}", time.time(), 0.01)
    return ResultBatch(sender="dc1-a", zone="dc1", partition=partition, job=f"snmp/xs{i}",
                       results=[WireResult.from_result(r)])


async def eventually(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def drop_streams(url: str, prefix: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    for stream in (f"{prefix.upper()}_WORK", f"{prefix.upper()}_RESULTS"):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(stream)
    await nc.close()


@contextlib.asynccontextmanager
async def transports(prefix: str, n: int = 1, url: str = SHARED,
                     **kw: Any) -> AsyncIterator[list[NatsTransport]]:
    ts = [NatsTransport(url, name=f"test-{i}", prefix=prefix, **kw) for i in range(n)]
    try:
        for t in ts:
            await t.connect()
        await ts[0].ensure_streams()
        yield ts
    finally:
        for t in ts:
            await t.close(flush_timeout=0)
        await drop_streams(url, prefix)


def recorder(seen: list[Delivery], *, ack: bool = True,
             delay: float = 0.0) -> Callable[[list[Delivery]], Awaitable[None]]:
    async def handle(deliveries: list[Delivery]) -> None:
        seen.extend(deliveries)
        if delay:
            await asyncio.sleep(delay)
        if ack:
            for d in deliveries:
                await d.ack()
    return handle


async def raw_publish(url: str, subject: str, data: bytes) -> None:
    nc = await nats.connect(url)
    await nc.jetstream().publish(subject, data)
    await nc.close()


# -- work ----------------------------------------------------------------------------------
def test_work_is_shared_by_two_consumers_of_one_durable(prefix: str) -> None:
    async def main() -> tuple[list[Delivery], list[Delivery]]:
        async with transports(prefix, 3) as (master, sat_a, sat_b):
            seen_a: list[Delivery] = []
            seen_b: list[Delivery] = []
            subject = master.work_subject("dc1")
            ca = sat_a.consume("work-dc1", subject, recorder(seen_a, delay=0.05), batch=2)
            cb = sat_b.consume("work-dc1", subject, recorder(seen_b, delay=0.05), batch=2)
            assert await ca.ready()
            assert await cb.ready()
            for i in range(30):
                assert await master.publish_work(work(i))
            await eventually(lambda: len(seen_a) + len(seen_b) >= 30)
            await asyncio.sleep(0.3)  # nothing more may come
            assert await depth_becomes(master, "work-dc1", 0)
            return seen_a, seen_b

    seen_a, seen_b = run(main())
    jobs = [d.message.job for d in seen_a + seen_b if isinstance(d.message, WorkItem)]
    assert sorted(jobs) == sorted(f"snmp/xs{i}" for i in range(30))  # each item exactly once
    assert seen_a
    assert seen_b
    assert all(d.delivered == 1 for d in seen_a + seen_b)


# -- results ---------------------------------------------------------------------------------
def test_results_are_acknowledged_by_the_caller_later(prefix: str) -> None:
    async def main() -> None:
        async with transports(prefix, 2) as (sat, master):
            held: list[Delivery] = []
            consumer = master.consume("results-0", master.results_subject(0),
                                      recorder(held, ack=False), ack_wait=1.5)
            for i in range(5):
                assert await sat.publish_results(results(i))
            assert sat.buffered() == 0
            await eventually(lambda: len(held) == 5)
            assert await master.depth("results-0") == 5  # delivered, not acknowledged
            await asyncio.sleep(0.8)  # "persisting its state"
            for d in held:
                await d.ack()
            await asyncio.sleep(1.2)  # past ack_wait: acknowledged, so nothing comes back
            assert len(held) == 5
            assert await depth_becomes(master, "results-0", 0)
            batch = held[0].message
            assert isinstance(batch, ResultBatch)
            assert batch.check_results()[0].output == "batch 0"
            assert consumer.handler_errors == 0

    run(main())


def test_unacked_delivery_is_redelivered_to_the_other_consumer(prefix: str) -> None:
    async def main() -> None:
        async with transports(prefix, 3) as (sat, m1, m2):
            first: list[Delivery] = []
            second: list[Delivery] = []
            subject = m1.results_subject(3)
            # ack_wait outlasts c1's stop (one pull): the redelivery cannot go to c1's last pull
            c1 = m1.consume("results-3", subject, recorder(first, ack=False), ack_wait=2.5)
            assert await sat.publish_results(results(1, partition=3))
            await eventually(lambda: len(first) == 1)
            await c1.stop()  # the first master dies without acknowledging
            assert not c1.running
            started = time.monotonic()
            m2.consume("results-3", subject, recorder(second), ack_wait=2.5)
            await eventually(lambda: len(second) == 1)
            assert time.monotonic() - started < 5
            assert second[0].delivered == 2
            assert second[0].message == first[0].message

    run(main())


def test_malformed_messages_are_rejected_counted_terminated(prefix: str) -> None:
    async def main() -> None:
        async with transports(prefix, 2) as (sat, master):
            seen: list[Delivery] = []
            subject = master.results_subject(0)
            consumer = master.consume("results-0", subject, recorder(seen), ack_wait=1.0)
            await raw_publish(SHARED, subject, b"\x00garbage")
            await raw_publish(SHARED, subject, b'{"v": 9, "kind": "results"}')
            await raw_publish(SHARED, subject, encode(results(1, partition=5)))  # wrong subject
            await raw_publish(SHARED, subject, encode(work(1)))  # not a result
            assert await sat.publish_results(results(2))
            await eventually(lambda: len(seen) == 1)
            await asyncio.sleep(1.5)  # past ack_wait: terminated messages never come back
            assert [d.message.job for d in seen if isinstance(d.message, ResultBatch)] == [
                "snmp/xs2"]
            assert master.rejects.counts() == {
                ("unknown", "not_json"): 1, ("unknown", "version"): 1,
                ("results", "subject"): 1, ("work", "unexpected"): 1}
            assert await depth_becomes(master, "results-0", 0)
            assert consumer.running  # the loop goes on
            assert await sat.publish_results(results(3))
            await eventually(lambda: len(seen) == 2)

    run(main())


def test_a_failing_handler_naks_and_the_batch_comes_back(prefix: str) -> None:
    async def main() -> None:
        async with transports(prefix, 2) as (sat, master):
            attempts: list[int] = []

            async def flaky(deliveries: list[Delivery]) -> None:
                attempts.extend(d.delivered for d in deliveries)
                if len(attempts) == 1:
                    raise RuntimeError("database hiccup")
                for d in deliveries:
                    await d.ack()

            consumer = master.consume("results-0", master.results_subject(0), flaky,
                                      retry_delay=0.2)
            assert await sat.publish_results(results(1))
            await eventually(lambda: len(attempts) == 2)
            assert attempts == [1, 2]
            assert consumer.handler_errors == 1
            assert consumer.running

    run(main())


def test_stop_leaves_messages_for_the_next_owner(prefix: str) -> None:
    async def main() -> None:
        async with transports(prefix, 2) as (sat, master):
            seen: list[Delivery] = []
            subject = master.results_subject(1)
            consumer = master.consume("results-1", subject, recorder(seen))
            assert await consumer.ready()
            started = time.monotonic()
            await consumer.stop()
            assert time.monotonic() - started < 3
            for i in range(4):
                assert await sat.publish_results(results(i, partition=1))
            await asyncio.sleep(0.5)
            assert seen == []
            assert await master.depth("results-1") == 4
            assert await master.depth("no-such-consumer") == -1
            master.consume("results-1", subject, recorder(seen))  # a new owner takes over
            await eventually(lambda: len(seen) == 4)
            assert await depth_becomes(master, "results-1", 0)

    run(main())


async def depth_becomes(t: NatsTransport, durable: str, want: int) -> bool:
    """Acks are fire-and-forget: the server may count one more for a moment."""
    for _ in range(40):
        if await t.depth(durable) == want:
            return True
        await asyncio.sleep(0.05)
    return False


def test_a_vanished_stream_and_consumer_are_recreated(prefix: str) -> None:
    async def main() -> None:
        async with transports(prefix, 2) as (sat, master):
            await master.ensure_streams()
            seen: list[Delivery] = []
            consumer = master.consume("results-0", master.results_subject(0), recorder(seen))
            assert await sat.publish_results(results(1))
            await eventually(lambda: len(seen) == 1)
            nc = await nats.connect(SHARED)  # as if NATS came back on an empty store
            await nc.jetstream().delete_stream(master.results_stream)
            await nc.close()
            pending = asyncio.create_task(sat.publish_results(results(2)))
            assert not await pending  # no stream: buffered, retried
            assert sat.buffered() == 1
            await eventually(lambda: len(seen) == 2, 12)
            assert _index(seen[1]) == 2
            assert consumer.running
            # the consumer can see the batch before the publishing task has read its ack
            await eventually(lambda: sat.buffered() == 0)

    run(main())


def test_a_large_batch_is_split_in_order(prefix: str) -> None:
    async def main() -> None:
        async with transports(prefix, 2) as (sat, master):
            seen: list[Delivery] = []
            master.consume("results-0", master.results_subject(0), recorder(seen))
            rs = [CheckResult("xs1", f"plugin/c{i}", State.OK, "x" * 2000, 1.0)
                  for i in range(1500)]  # ~3 MB: over the server's 1 MiB payload
            big = ResultBatch(sender="dc1-a", zone="dc1", partition=0, job="plugin/all/xs1",
                              results=[WireResult.from_result(r) for r in rs])
            assert await sat.publish_results(big)
            await eventually(lambda: sum(
                len(d.message.results) for d in seen if isinstance(d.message, ResultBatch))
                == 1500)
            assert len(seen) > 1
            checks = [r.check for d in seen if isinstance(d.message, ResultBatch)
                      for r in d.message.results]
            assert checks == [f"plugin/c{i}" for i in range(1500)]

    run(main())


# -- streams, heartbeats, connection -------------------------------------------------------------
def test_ensure_streams_is_idempotent_and_concurrent(prefix: str) -> None:
    async def main() -> None:
        async with transports(prefix, 2) as (a, b):
            await asyncio.gather(a.ensure_streams(), b.ensure_streams(), a.ensure_streams())
            await asyncio.gather(a.ensure_streams(work_max_age=300),
                                 b.ensure_streams(work_max_age=300))
            nc = await nats.connect(SHARED)
            info = await nc.jetstream().stream_info(a.work_stream)
            results_info = await nc.jetstream().stream_info(a.results_stream)
            await nc.close()
            assert info.config.max_age == 300
            assert info.config.retention == "workqueue"
            assert info.config.subjects == [f"{prefix}.work.*"]
            assert results_info.config.subjects == [f"{prefix}.results.*"]
            assert results_info.config.storage == "file"

    run(main())


def test_heartbeats_are_validated(prefix: str) -> None:
    async def main() -> None:
        async with transports(prefix, 2) as (sat, master):
            got: list[Heartbeat] = []

            async def on_heartbeat(hb: Heartbeat) -> None:
                got.append(hb)

            sub = master.subscribe_heartbeats(on_heartbeat)
            await sub.ready()
            hb = Heartbeat(sender="dc1-a", zone="dc1", ts=time.time(), inflight=2, buffered=0)
            assert await sat.publish_heartbeat(hb)
            nc = await nats.connect(SHARED)
            await nc.publish(f"{prefix}.heartbeat.dc1.dc1-a", b"{not json")
            await nc.publish(f"{prefix}.heartbeat.dc2.dc1-a", encode(hb))  # zone mismatch
            await nc.flush()
            await nc.close()
            await eventually(lambda: master.rejects.total() == 2)
            assert got == [hb]
            assert master.rejects.counts() == {("unknown", "not_json"): 1,
                                               ("heartbeat", "subject"): 1}
            await sub.stop()

    run(main())


def test_a_first_connect_that_fails_raises_connection_failed() -> None:
    port = free_port()

    async def main() -> None:
        t = NatsTransport(f"nats://admin:s3cret@127.0.0.1:{port}", name="x")
        started = time.monotonic()
        with pytest.raises(ConnectionFailed) as info:
            await t.connect()
        assert time.monotonic() - started < 10
        assert "s3cret" not in str(info.value)
        assert f"127.0.0.1:{port}" in str(info.value)
        assert info.value.retryable

    run(main())


def test_results_survive_a_nats_restart(private_nats: PrivateNats, prefix: str) -> None:
    async def main() -> tuple[list[Delivery], list[int], NatsTransport]:
        async with transports(prefix, 2, url=private_nats.url) as (sat, master):
            seen: list[Delivery] = []
            consumer = master.consume("results-0", master.results_subject(0), recorder(seen))
            published: list[int] = []
            stop_publishing = asyncio.Event()

            async def publisher() -> None:
                i = 0
                while not stop_publishing.is_set():
                    await sat.publish_results(results(i))
                    published.append(i)
                    i += 1
                    await asyncio.sleep(0.02)

            task = asyncio.create_task(publisher())
            await eventually(lambda: len(seen) >= 10)
            await asyncio.to_thread(private_nats.stop)  # mid-stream
            await eventually(lambda: not sat.connected and not master.connected)
            await eventually(lambda: sat.buffered() >= 20)  # results wait in the buffer
            assert not await sat.publish_work(work(1))  # work is dropped, counted
            assert sat.dropped_work == 1
            received_while_down = len(seen)
            await asyncio.to_thread(private_nats.start)
            await eventually(lambda: sat.connected and master.connected)
            await asyncio.sleep(0.3)
            stop_publishing.set()
            await task
            await eventually(lambda: sat.buffered() == 0)
            await eventually(lambda: len({_index(d) for d in seen}) == len(published), 15)
            assert len(seen) > received_while_down  # the consumer loop resumed
            assert consumer.running
            assert sat.dropped_results == 0
            return seen, published, sat

    seen, published, _ = run(main(), timeout=45)
    # Nothing lost, nothing stored twice, in order. (A redelivery because an ack was cut by
    # the restart would carry delivered > 1: allowed by at-least-once, never a duplicate
    # first delivery.)
    firsts = [_index(d) for d in seen if d.delivered == 1]
    assert firsts == published
    assert {_index(d) for d in seen} == set(published)


def _index(d: Delivery) -> int:
    assert isinstance(d.message, ResultBatch)
    return int(d.message.job.removeprefix("snmp/xs"))
