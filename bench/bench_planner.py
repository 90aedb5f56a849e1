"""Time ``plan_maintenance`` on large deterministic pools.

Why: the planner runs inside an incident (a host overheating), so it must answer in
milliseconds even for big pools. Rows: the reference pool (64 hosts × 1,000 VMs, emptying
the master), a crowded one (the master carries a quarter of the VMs: the packing path
dominates) and a stress pool (1,000 hosts × 20,000 VMs).

    .venv/bin/python bench/bench_planner.py [--runs N]

The last line printed is one JSON object for the bench harness.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from typing import Any

from poolwarden.hypervisor.base import HostState, PoolSnapshot, VMState
from poolwarden.remediate.model import StepKind
from poolwarden.remediate.planner import plan_maintenance
from poolwarden.tools.cpu_level import common_level

GIB = 2**30
TARGET_MS = 1000
#: three CPU generations; most VMs booted with the pool level, some with their host's key
GENERATIONS = ("0000e39d-bfebfbff-00000001-20100800", "0000e3bd-bfebfbff-00000001-20100800",
               "0000e3bd-bfebfbff-00000001-28100800")
LEVEL = common_level(GENERATIONS)


def build_pool(n_hosts: int, n_vms: int, *, seed: int, master_share: float = 0.0,
               ) -> PoolSnapshot:
    """A pool whose hosts are about 40 % full, so an evacuation fits but is not trivial."""
    rng = random.Random(seed)
    keys = [GENERATIONS[i % len(GENERATIONS)] for i in range(n_hosts)]
    total = [rng.choice((256, 384, 512)) * GIB for _ in range(n_hosts)]
    used = [0] * n_hosts
    vms = []
    for i in range(n_vms):
        on = 0 if rng.random() < master_share else rng.randrange(n_hosts)
        memory = rng.choice((1, 2, 2, 4, 4, 4, 8, 8, 16, 32)) * GIB // (8 if on == 0 else 1)
        state = "Halted" if rng.random() < 0.05 else "Running"
        if state == "Running":
            used[on] += memory
        cpu = keys[on] if rng.random() < 0.2 else LEVEL
        vms.append(VMState(f"OpaqueRef:vm-{i}", f"vm-{i:05d}", state, f"OpaqueRef:host-{on}",
                           memory, cpu))
    hosts = tuple(
        HostState(f"OpaqueRef:host-{i}", f"host-{i:04d}", f"10.1.{i // 256}.{i % 256}",
                  True, True, total[i], max(0, total[i] - used[i] - 8 * GIB), keys[i])
        for i in range(n_hosts))
    return PoolSnapshot("OpaqueRef:pool", "bench", hosts[0].ref, hosts, tuple(vms))


def measure(name: str, snap: PoolSnapshot, runs: int) -> dict[str, Any]:
    master = snap.hosts[0].name
    plan = plan_maintenance(snap, master)  # warm-up, and the figures the row reports
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        plan_maintenance(snap, master)
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    row = {
        "hosts": len(snap.hosts), "vms": len(snap.vms), "runs": runs,
        "moved": sum(s.kind is StepKind.MIGRATE_VM for s in plan.steps),
        "feasible": plan.feasible,
        "median_ms": round(statistics.median(samples), 3),
        "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 3),
    }
    print(f"{name:<9} {row['hosts']:>5} hosts {row['vms']:>6} VMs  moves {row['moved']:>5}  "
          f"feasible={row['feasible']!s:<5}  median {row['median_ms']:8.3f} ms  "
          f"p99 {row['p99_ms']:8.3f} ms  ({runs} runs)")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="timed runs of the main row")
    args = parser.parse_args()
    main_row = measure("reference", build_pool(64, 1000, seed=1), args.runs)
    crowded = measure("crowded", build_pool(64, 1000, seed=2, master_share=0.25), args.runs)
    stress = measure("stress", build_pool(1000, 20000, seed=3), max(5, args.runs // 20))
    print(json.dumps({
        "bench": "planner", "hosts": main_row["hosts"], "vms": main_row["vms"],
        "median_ms": main_row["median_ms"], "p99_ms": main_row["p99_ms"],
        "target_ms": TARGET_MS, "runs": main_row["runs"], "moved": main_row["moved"],
        "feasible": main_row["feasible"], "crowded": crowded, "stress": stress,
    }))


if __name__ == "__main__":
    main()
