"""Evaluation throughput on one core: ranges → state engine → incident dedup.

Why: every sensor reading of every host goes through this path; MONITORING.md's figures
to beat are ~9,000-15,000 values/s (Zabbix) and ~8,400 events/s (Icinga 2, 10k hosts),
so one core must keep far ahead (target 200,000 samples/s) to leave room for collection.

Traffic: 15,000 checks (500 hosts × 30: 20 SNMP sensors, the agent, 9 plugin checks),
mostly OK readings with noise; 1 % of the checks drift into a sustained problem (SOFT →
HARD), 0.5 % hover around their threshold (flapping), and every 10th round one host's
agent stops answering for 4 rounds (unreachable folding). Each sample is: evaluate the
reading against the check's parsed ranges, build the ``CheckResult`` the collector would
publish, run it through ``StateEngine.process``; each round's changes go through the real
``IncidentManager`` (in-memory dedup index, one transaction per round) on SQLite.

    .venv/bin/python bench/bench_evaluate.py [--rounds N] [--checks N]

The last line printed is one JSON object for the bench harness.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections import Counter

from poolwarden.evaluate.ranges import Range, evaluate, parse_range
from poolwarden.evaluate.state import StateEngine
from poolwarden.incidents import IncidentManager
from poolwarden.messages import CheckResult, FlappingChange, State, StateChange
from poolwarden.store.db import Store

TARGET = 200_000
CHECKS_PER_HOST = 30
SENSORS_PER_HOST = 20
#: (warn, crit, baseline, noise) per kind of check
KINDS = {
    "snmp/temperature": ("~:75", "~:85", 45.0, 5.0),
    "snmp/fan": ("3000:", "2000:", 6000.0, 400.0),
    "snmp/voltage": ("11.4:12.6", "10.8:13.2", 12.0, 0.1),
    "plugin/load": ("8", "16", 2.0, 1.0),
    "plugin/disk_used": ("~:80", "~:90", 50.0, 5.0),
}
OUTPUTS = {s: f"{s.name} - reading within its thresholds" for s in State}


def build_checks(n: int, rng: random.Random) -> list[tuple[str, str, Range, Range, str]]:
    """(host, check id, warn, crit, kind) for n checks, ranges parsed once."""
    parsed = {k: (parse_range(w), parse_range(c)) for k, (w, c, _, _) in KINDS.items()}
    snmp = [k for k in KINDS if k.startswith("snmp/")]
    plugin = [k for k in KINDS if k.startswith("plugin/")]
    checks = []
    for i in range(n):
        host, slot = f"xs{i // CHECKS_PER_HOST:04d}", i % CHECKS_PER_HOST
        kind = rng.choice(snmp) if slot < SENSORS_PER_HOST else rng.choice(plugin)
        warn, crit = parsed[kind]
        checks.append((host, f"{kind}/{slot}", warn, crit, kind))
    return checks


def build_values(checks: list[tuple[str, str, Range, Range, str]], rounds: int,
                 rng: random.Random) -> list[list[float]]:
    """Per round, every check's reading: noise around the baseline, with drifting and
    hovering checks; precomputed so the timed loop measures evaluation only."""
    per_round: list[list[float]] = [[] for _ in range(rounds)]
    for _host, _check, warn, crit, kind in checks:
        base, noise = KINDS[kind][2], KINDS[kind][3]
        roll = rng.random()
        bad = crit.start - noise if crit.start > -1e300 else crit.end + noise
        edge = warn.start if warn.start > -1e300 else warn.end
        drifts, hovers = roll < 0.01, 0.01 <= roll < 0.015
        for r in range(rounds):
            if drifts and r >= rounds // 3:  # drifts into a sustained problem
                v = bad
            elif hovers:  # around its warning threshold, crossing it every round
                v = edge + (noise if r % 2 else -noise)
            else:
                v = rng.gauss(base, noise / 3)
            per_round[r].append(v)
    return per_round


def run(n_checks: int, rounds: int, seed: int, store_url: str | None = None,
        ) -> dict[str, float]:
    rng = random.Random(seed)
    checks = build_checks(n_checks, rng)
    values = build_values(checks, rounds, rng)
    hosts = sorted({c[0] for c in checks})
    engine = StateEngine()
    tmp = tempfile.TemporaryDirectory(prefix="pw-bench-")
    store = Store.open(store_url or f"sqlite:///{tmp.name}/bench.db")
    incidents = IncidentManager(store)  # the real dedup: in-memory index + batched writes
    totals: Counter[str] = Counter()
    changes_total = 0
    samples = 0
    start = time.perf_counter()
    for r in range(rounds):
        now = 1_700_000_000.0 + r * 60
        down = hosts[r // 10 % len(hosts)] if r % 10 < 4 else None  # an agent outage
        batch: list[StateChange] = []
        for (host, check, warn, crit, _kind), value in zip(checks, values[r], strict=True):
            unreachable = host == down and check.startswith("snmp/")
            state = State.UNKNOWN if unreachable else evaluate(value, warn, crit)
            result = CheckResult(host, check, state, OUTPUTS[state], now,
                                 unreachable=unreachable)
            batch.extend(engine.process(result, now))
        if batch:  # one transaction per round of changes, as the service's bus batches
            done = incidents.handle_many(batch)
            totals.update(opened=done.opened, updated=done.updated, resolved=done.resolved)
            changes_total += len(batch)
            totals["flapping_starts"] += sum(
                c.flapping_change is FlappingChange.START for c in batch)
        samples += len(checks)
    elapsed = time.perf_counter() - start
    open_now = incidents.open_count()
    store.close()
    tmp.cleanup()
    return {"samples": samples, "seconds": round(elapsed, 3),
            "samples_per_s": round(samples / elapsed), "changes": changes_total,
            "incidents_opened": totals["opened"], "incidents_resolved": totals["resolved"],
            "incidents_updated": totals["updated"], "incidents_open_at_end": open_now,
            "flapping_starts": totals["flapping_starts"], "checks": len(engine)}


def range_only(n: int) -> float:
    """Samples/s of ``evaluate`` alone, for the breakdown."""
    warn, crit = parse_range("~:75"), parse_range("~:85")
    values = [45.0 + (i % 50) for i in range(n)]
    start = time.perf_counter()
    for v in values:
        evaluate(v, warn, crit)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checks", type=int, default=15_000)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--store", default=None, help="SQLAlchemy URL (default: temp SQLite)")
    args = parser.parse_args()
    row = run(args.checks, args.rounds, args.seed, args.store)
    ranges_per_s = range_only(1_000_000)
    print(f"{row['checks']} checks × {args.rounds} rounds = {row['samples']} samples in "
          f"{row['seconds']} s: {row['samples_per_s']:,} samples/s (target {TARGET:,})")
    print(f"  state changes {row['changes']}, incidents opened {row['incidents_opened']}, "
          f"resolved {row['incidents_resolved']} (open at end "
          f"{row['incidents_open_at_end']}), flapping starts {row['flapping_starts']}")
    print("  incidents: the real IncidentManager on SQLite (in-memory dedup, one "
          "transaction per round)")
    print(f"  ranges alone: {ranges_per_s:,.0f} evaluations/s")
    print(json.dumps({"bench": "evaluate", "samples_per_s": row["samples_per_s"],
                      "target": TARGET, "ok": row["samples_per_s"] >= TARGET,
                      "ranges_per_s": round(ranges_per_s), **row}))


if __name__ == "__main__":
    main()
