"""Throughput of ``IncidentManager.handle_many`` (and of ``SampleWriter``) on SQLite.

Why: every state change of every check goes through the incident manager, and field
reports put sites at thousands of values per second (MONITORING.md "Scale figures").
Most changes repeat what an open incident already says, so the figure that matters most
is how many of those in-memory dedup decisions the manager makes per second; the second
is how fast it writes the ones that do change something (opens, state changes,
resolutions, each with its timeline entry), batched one transaction per batch.

Rows: (1) dedup hits only (no SQL at all); (2) a realistic mix — 85 % dedup hits, 5 %
SOFT changes, 4 % state changes, 3 % resolutions, 3 % new problems — over 14,000 checks
(1,000 hosts × 14) with about 7 % of them in trouble; (3) readings written by
``SampleWriter`` in batches of 500.

    .venv/bin/python bench/bench_incidents.py [--changes N] [--batch N] [--url URL]

The last line printed is one JSON object for the bench harness.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from poolwarden.incidents import IncidentManager, SampleWriter
from poolwarden.messages import CheckResult, Reading, State, StateChange, StateType

HOSTS, CHECKS_PER_HOST = 1000, 14
PROBLEMS = (State.WARNING, State.CRITICAL, State.UNKNOWN)


def key_of(i: int) -> tuple[str, str]:
    return f"xs{i // CHECKS_PER_HOST:04d}", f"snmp/temperature/Sensor {i % CHECKS_PER_HOST}"


def make(i: int, old: State, new: State, ts: float, *, hard: bool = True) -> StateChange:
    host, check = key_of(i)
    reading = Reading("temperature", check, 60.0 + (ts % 40), "C", 80.0, 90.0)
    return StateChange(host, check, old, new, StateType.HARD if hard else StateType.SOFT,
                       3 if hard else 1, 3, ts, f"{new.name} {reading.value:.0f} C",
                       hard and new is not old, reading=reading, labels={"pool": "bench"})


class Site:
    """The checks' true states, so the generated stream is one a state engine could emit."""

    def __init__(self, seed: int, share_open: float = 0.07) -> None:
        self.rng = random.Random(seed)
        n = HOSTS * CHECKS_PER_HOST
        self.state = [State.OK] * n
        for i in self.rng.sample(range(n), int(n * share_open)):
            self.state[i] = self.rng.choice(PROBLEMS)
        self.ts = 1_000_000.0

    def problems(self) -> list[int]:
        return [i for i, s in enumerate(self.state) if s is not State.OK]

    def opening(self) -> list[StateChange]:
        return [make(i, State.OK, self.state[i], self.ts) for i in self.problems()]

    def _any(self, want_open: bool) -> int:
        while True:
            i = self.rng.randrange(len(self.state))
            if (self.state[i] is not State.OK) is want_open:
                return i

    def next(self) -> StateChange:
        self.ts += 0.01
        r, rng = self.rng.random(), self.rng
        if r < 0.85:  # a repeat of what an open incident already says
            i = self._any(True)
            s = self.state[i]
            return StateChange(*key_of(i), s, s, StateType.HARD, 3, 3, self.ts, "same",
                               True)
        if r < 0.90:  # a SOFT problem on a healthy check
            return make(self._any(False), State.OK, rng.choice(PROBLEMS), self.ts, hard=False)
        if r < 0.94:  # the problem gets worse or better
            i = self._any(True)
            old = self.state[i]
            self.state[i] = rng.choice([p for p in PROBLEMS if p is not old])
            return make(i, old, self.state[i], self.ts)
        if r < 0.97:  # recovery
            i = self._any(True)
            old, self.state[i] = self.state[i], State.OK
            return make(i, old, State.OK, self.ts)
        i = self._any(False)  # a new problem
        self.state[i] = rng.choice(PROBLEMS)
        return make(i, State.OK, self.state[i], self.ts)


def run_batches(m: IncidentManager, batches: list[list[StateChange]]) -> dict[str, Any]:
    lat, written, opened = [], 0, 0
    start = time.perf_counter()
    for b in batches:
        t0 = time.perf_counter()
        res = m.handle_many(b)
        lat.append((time.perf_counter() - t0) * 1000)
        written += res.written
        opened += res.opened
    elapsed = time.perf_counter() - start
    lat.sort()
    n = sum(len(b) for b in batches)
    return {"changes": n, "seconds": round(elapsed, 3),
            "changes_per_s": round(n / elapsed), "writes": written,
            "writes_per_s": round(written / elapsed), "opened": opened,
            "batch_ms_median": round(statistics.median(lat), 2),
            "batch_ms_p99": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--changes", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--url", help="store URL (default: a fresh SQLite file)")
    args = ap.parse_args()
    from poolwarden.store.db import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(args.url or f"sqlite:///{Path(tmp) / 'bench.db'}")
        site = Site(seed=7)
        m = IncidentManager(store)
        t0 = time.perf_counter()
        m.handle_many(site.opening())
        setup_s = time.perf_counter() - t0
        n_open = m.open_count()
        print(f"setup: {HOSTS * CHECKS_PER_HOST} checks, {n_open} incidents opened "
              f"in {setup_s:.2f} s (one batch)")

        hits = [StateChange(*key_of(i), site.state[i], site.state[i], StateType.HARD, 3, 3,
                            site.ts, "same", True) for i in site.problems()]
        stream = [hits[j % len(hits)] for j in range(args.changes)]
        batches = [stream[j:j + args.batch] for j in range(0, len(stream), args.batch)]
        dedup = run_batches(m, batches)
        print(f"dedup hits only  {dedup['changes']:>8} changes  "
              f"{dedup['changes_per_s']:>10,} decisions/s  (writes {dedup['writes']})")

        stream = [site.next() for _ in range(args.changes)]
        batches = [stream[j:j + args.batch] for j in range(0, len(stream), args.batch)]
        mixed = run_batches(m, batches)
        print(f"realistic mix    {mixed['changes']:>8} changes  "
              f"{mixed['changes_per_s']:>10,} changes/s    "
              f"{mixed['writes_per_s']:>7,} incident writes/s  "
              f"batch of {args.batch}: median {mixed['batch_ms_median']} ms, "
              f"p99 {mixed['batch_ms_p99']} ms")

        writer = SampleWriter(store, batch_size=500, max_delay=3600)
        results = [CheckResult(*key_of(i % (HOSTS * CHECKS_PER_HOST)), State.OK, "", float(i),
                               reading=Reading("temperature", "t", 50.0))
                   for i in range(args.samples)]
        t0 = time.perf_counter()
        for r in results:
            writer.add(r)
        writer.flush()
        samples_per_s = round(args.samples / (time.perf_counter() - t0))
        print(f"samples          {args.samples:>8} readings {samples_per_s:>10,} readings/s "
              f"(batches of 500)")
        store.close()
    print(json.dumps({
        "bench": "incidents", "backend": (args.url or "sqlite").split(":")[0],
        "checks": HOSTS * CHECKS_PER_HOST, "open_at_start": n_open, "batch": args.batch,
        "dedup_decisions_per_s": dedup["changes_per_s"],
        "mixed_changes_per_s": mixed["changes_per_s"],
        "mixed_db_writes_per_s": mixed["writes_per_s"],
        "mixed_batch_ms_median": mixed["batch_ms_median"],
        "mixed_batch_ms_p99": mixed["batch_ms_p99"],
        "samples_per_s": samples_per_s,
    }))


if __name__ == "__main__":
    main()
