"""The scheduler: intervals, spread, concurrency bound, timeouts, no overlap, lateness."""

from __future__ import annotations

import asyncio

from poolwarden.collect.scheduler import Job, Scheduler, spread_offset


async def run_for(s: Scheduler, seconds: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_later(seconds, stop.set)
    await s.run(stop)


def test_spread_offsets_are_stable_and_within_the_interval() -> None:
    offsets = [spread_offset(f"snmp/host{i}", 60.0) for i in range(1000)]
    assert all(0 <= o < 60 for o in offsets)
    assert offsets == [spread_offset(f"snmp/host{i}", 60.0) for i in range(1000)]
    # 1000 jobs are spread over the minute: no second holds more than 5 % of them.
    per_second = [0] * 60
    for o in offsets:
        per_second[int(o)] += 1
    assert max(per_second) < 50


def test_jobs_run_at_their_interval() -> None:
    runs: list[str] = []

    async def tick() -> None:
        runs.append("x")

    s = Scheduler()
    s.add(Job("a", 0.05, tick), first_in=0)
    asyncio.run(run_for(s, 0.33))
    assert 6 <= len(runs) <= 8
    assert s.stats.runs == len(runs)


def test_a_hanging_target_does_not_stall_the_others() -> None:
    fast: list[int] = []

    async def hang() -> None:
        await asyncio.sleep(3600)

    async def tick() -> None:
        fast.append(1)

    s = Scheduler(concurrency=10)
    s.add(Job("hung", 0.05, hang, timeout=0.1), first_in=0)
    s.add(Job("fast", 0.05, tick), first_in=0)
    asyncio.run(run_for(s, 0.5))
    assert len(fast) >= 8
    assert s.stats.timeouts >= 2


def test_a_slow_job_never_overlaps_itself() -> None:
    active, peak = 0, 0

    async def slow() -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.12)
        active -= 1

    s = Scheduler()
    s.add(Job("slow", 0.05, slow), first_in=0)
    asyncio.run(run_for(s, 0.5))
    assert peak == 1
    assert s.stats.overruns + s.stats.skipped >= 1


def test_concurrency_is_bounded_and_lateness_is_reported() -> None:
    active, peak = 0, 0

    async def work() -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.1)
        active -= 1

    s = Scheduler(concurrency=3, late_after=0.05)
    for i in range(9):
        s.add(Job(f"j{i}", 10.0, work), first_in=0)
    asyncio.run(run_for(s, 0.45))
    assert peak == 3
    assert s.stats.runs == 9
    # Nine 0.1 s jobs through three slots: the last three start ~0.2 s late.
    assert 0.15 <= s.stats.lateness_max < 0.4
    assert s.stats.late_runs >= 3


def test_next_interval_overrides_the_interval_and_errors_are_contained() -> None:
    calls: list[int] = []

    async def flaky() -> None:
        calls.append(1)
        raise RuntimeError("plugin bug")

    s = Scheduler()
    s.add(Job("retry", 10.0, flaky, next_interval=lambda: 0.05), first_in=0)
    asyncio.run(run_for(s, 0.3))
    assert len(calls) >= 4  # the 0.05 s retry interval, not the 10 s interval
    assert s.stats.errors == len(calls)


def test_removed_jobs_stop_running() -> None:
    runs: list[int] = []

    async def tick() -> None:
        runs.append(1)
        if len(runs) == 2:
            s.remove("a")

    s = Scheduler()
    s.add(Job("a", 0.02, tick), first_in=0)
    asyncio.run(run_for(s, 0.2))
    assert len(runs) == 2
    assert len(s) == 0


def test_a_job_removed_and_added_again_runs_once_per_interval() -> None:
    """A master giving a partition up and taking it back must not poll twice."""
    runs: list[str] = []

    async def tick() -> None:
        runs.append("x")

    async def churn(s: Scheduler) -> None:
        for _ in range(5):
            s.remove("a")
            s.add(Job("a", 0.1, tick), first_in=0.1)
            await asyncio.sleep(0.01)

    async def main() -> None:
        s = Scheduler()
        s.add(Job("a", 0.1, tick), first_in=0.1)
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.66, stop.set)
        await asyncio.gather(s.run(stop), churn(s))

    asyncio.run(main())
    assert 5 <= len(runs) <= 7  # not 6 × (1 + 5 stale schedules)
