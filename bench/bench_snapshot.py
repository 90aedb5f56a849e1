"""Read a large pool and plan its master's maintenance, end to end through XenAPI.

What an operator waits for after typing ``poolwarden host maintenance``: the driver's
snapshot (``pool``, ``host``, ``host_metrics``, ``VM.get_all_records``, one
``host.compute_free_memory`` per host, ``get_vms_which_prevent_evacuation``) of a pool of
64 hosts × 1,000 VMs served by the lab in a child process, then the pure plan.

    .venv/bin/python bench/bench_snapshot.py [--hosts 64] [--vms 1000] [--runs 5]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import statistics
import time
from multiprocessing.connection import Connection
from typing import Any

from poolwarden.hypervisor.xenapi import XenAPIDriver
from poolwarden.lab import Lab, Layout
from poolwarden.remediate.planner import plan_maintenance


def big_layout(hosts: int, vms: int, seed: int = 7) -> dict[str, Any]:
    rnd = random.Random(seed)
    names = [f"xs{i:03d}" for i in range(hosts)]
    return {
        "pool": {"name": "bench-pool", "master": names[0]},
        "hosts": [{"name": n, "memory_gib": 512} for n in names],
        "vms": [{"name": f"vm{i:05d}", "memory_gib": rnd.choice([1, 2, 4, 8]),
                 "host": names[i % hosts]} for i in range(vms)],
        "credentials": {"user": "root", "password": "bench"},
    }


def _serve(conn: Connection, doc: dict[str, Any]) -> None:
    lab = Lab(Layout.model_validate(doc)).start()
    conn.send(lab.summary())
    conn.recv()
    lab.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=64)
    ap.add_argument("--vms", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    doc = big_layout(args.hosts, args.vms)
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=_serve, args=(child, doc), daemon=True)
    proc.start()
    summary = parent.recv()
    snap_ms, plan_ms, steps = [], [], 0
    try:
        with XenAPIDriver(summary["xapi"][summary["master"]], "root", "bench") as driver:
            master = driver.snapshot().master
            for _ in range(args.runs):
                t0 = time.perf_counter()
                snap = driver.snapshot(evacuating=master)
                t1 = time.perf_counter()
                plan = plan_maintenance(snap, master)
                t2 = time.perf_counter()
                snap_ms.append((t1 - t0) * 1000)
                plan_ms.append((t2 - t1) * 1000)
                steps = len(plan.steps)
    finally:
        parent.send("stop")
        proc.join(timeout=10)
    snap_med, plan_med = statistics.median(snap_ms), statistics.median(plan_ms)
    print(f"pool of {args.hosts} hosts x {args.vms} VMs served by the lab (child process)")
    print(f"  snapshot through XenAPI: median {snap_med:8.1f} ms (max {max(snap_ms):.1f})")
    print(f"  plan (pure):             median {plan_med:8.1f} ms  -> {steps} steps")
    print(f"  read + plan:             median {snap_med + plan_med:8.1f} ms")
    print(json.dumps({
        "bench": "snapshot_and_plan", "hosts": args.hosts, "vms": args.vms,
        "runs": args.runs, "snapshot_median_ms": round(snap_med, 1),
        "plan_median_ms": round(plan_med, 2),
        "total_median_ms": round(snap_med + plan_med, 1), "steps": steps,
    }))


if __name__ == "__main__":
    main()
