"""Run checks at their intervals: spread out, bounded, never stalled, honest about delays.

- **Spread**: a job's first run is offset by a stable hash of its id within its interval,
  so 15,000 checks with a 60 s interval start ~250 a second, not all at t=0.
- **Bounded**: at most ``concurrency`` jobs run at once (a semaphore); each run has its own
  timeout, so a target that hangs costs one slot for ``timeout`` seconds, never the loop.
- **No overlap**: a job still running when it is due again is not started twice; the
  skipped run is counted as an overrun.
- **No drift**: the next due time is the previous due time plus the interval (not "now +
  interval"); when a run is so late that whole intervals were missed, they are skipped
  (and counted) instead of being run back to back.
- **Lateness** (start time − due time) is measured for every run, so the scheduler reports
  its own health (DESIGN: "no scheduler lateness" is a target of the scale-out figures).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Job:
    id: str
    interval: float
    run: Callable[[], Awaitable[None]]
    timeout: float = 30.0
    #: asked after each run: the delay until the next one (e.g. the retry interval while a
    #: check is in a SOFT problem state); None keeps ``interval``
    next_interval: Callable[[], float | None] | None = None


@dataclass
class SchedulerStats:
    runs: int = 0
    timeouts: int = 0
    errors: int = 0
    overruns: int = 0  # due while the previous run was still going
    skipped: int = 0  # whole intervals missed because the loop was late
    lateness_max: float = 0.0
    lateness_sum: float = 0.0
    late_runs: int = 0  # started more than ``late_after`` seconds after due
    running: int = 0
    recent_lateness: list[float] = field(default_factory=list)

    @property
    def lateness_mean(self) -> float:
        return self.lateness_sum / self.runs if self.runs else 0.0


def spread_offset(job_id: str, interval: float) -> float:
    """A stable offset in [0, interval): the same job starts at the same phase every time."""
    return (zlib.crc32(job_id.encode()) % 10_000) / 10_000 * interval


class Scheduler:
    def __init__(self, *, concurrency: int = 200, late_after: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._jobs: dict[str, Job] = {}
        self._heap: list[tuple[float, int, Job]] = []
        self._seq = 0
        self._running: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sem = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self.late_after = late_after
        self.clock = clock
        self.stats = SchedulerStats()

    def add(self, job: Job, *, first_in: float | None = None) -> None:
        """Schedule ``job``; by default its first run is spread within its interval.
        Adding an id again replaces the job (its old schedule is forgotten, never run
        as well: a master that gives a partition up and takes it back must not poll
        twice per interval)."""
        self._jobs[job.id] = job
        delay = spread_offset(job.id, job.interval) if first_in is None else first_in
        self._push(self.clock() + delay, job)

    def remove(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)  # its heap entry is dropped when it comes due

    def __len__(self) -> int:
        return len(self._jobs)

    def _push(self, due: float, job: Job) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, job))
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch due jobs until ``stop`` is set; then wait for running jobs to end."""
        while not stop.is_set():
            now = self.clock()
            while self._heap and self._heap[0][0] <= now:
                due, _, job = heapq.heappop(self._heap)
                if self._jobs.get(job.id) is job:  # else removed or replaced since
                    self._dispatch(job, due, now)
            delay = self._heap[0][0] - self.clock() if self._heap else 1.0
            self._wake.clear()
            stopper = asyncio.ensure_future(stop.wait())
            waker = asyncio.ensure_future(self._wake.wait())
            await asyncio.wait({stopper, waker}, timeout=max(0.0, min(delay, 1.0)),
                               return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            waker.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _dispatch(self, job: Job, due: float, now: float) -> None:
        if job.id in self._running:
            self.stats.overruns += 1
            self._push(due + job.interval, job)
            return
        missed = int((now - due) // job.interval) if now - due >= job.interval else 0
        if missed:
            self.stats.skipped += missed
            due += missed * job.interval
        self._running.add(job.id)
        task = asyncio.create_task(self._execute(job, due))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, job: Job, due: float) -> None:
        async with self._sem:
            started = self.clock()
            self._record_lateness(max(0.0, started - due))
            self.stats.running += 1
            try:
                await asyncio.wait_for(job.run(), timeout=job.timeout)
            except TimeoutError:
                self.stats.timeouts += 1
                log.warning("job %s timed out after %.1f s", job.id, job.timeout)
            except Exception:  # a broken check must not stop the scheduler
                self.stats.errors += 1
                log.exception("job %s failed", job.id)
            finally:
                self.stats.running -= 1
                self.stats.runs += 1
                self._running.discard(job.id)
        if self._jobs.get(job.id) is job:
            nxt = job.next_interval() if job.next_interval else None
            if nxt is not None:
                self._push(self.clock() + nxt, job)
            else:
                self._push(due + job.interval, job)

    def _record_lateness(self, late: float) -> None:
        s = self.stats
        s.lateness_sum += late
        s.lateness_max = max(s.lateness_max, late)
        if late > self.late_after:
            s.late_runs += 1
        s.recent_lateness.append(late)
        if len(s.recent_lateness) > 1000:
            del s.recent_lateness[:500]
