"""How the distributed design scales to 1,000,000 checks over 50 zones: a model fed with
costs measured here, on this machine, by this script.

    .venv/bin/python bench/sim_scale.py [--checks 1000000] [--zones 50] [--interval 60]
                                        [--master-share 0.25]

Measured (each in isolation, on one core):
- the master's CPU per result: JSON decode + validation of a result batch (33 sensor
  results, as one iDRAC poll gives), conversion, and the state engine;
- the satellite's CPU per result to encode its batch;
- PostgreSQL's rate of batched sample inserts (the ``sample`` table, 10,000-row batches);
- PostgreSQL's rate of fenced ``check_state`` upserts.
Then the model: per second, the work items and result batches on the bus, the bytes, the
database rows, the masters needed at ``--master-share`` of a core each, and which limit
is reached first. Measured figures from bench_distributed.py (the whole master process,
API and database client included) are used as the per-result master cost when given with
``--master-ms-per-result``. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

import psycopg

from poolwarden.distributed.wire import ResultBatch, WireResult, decode, encode
from poolwarden.evaluate.state import CheckConfig, StateEngine
from poolwarden.messages import CheckResult, Reading, State
from poolwarden.store.db import Store

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
SENSORS_PER_JOB = 33  # one iDRAC poll (the lab's R640 recording)


def batch(host: int, ts: float) -> ResultBatch:
    results = [CheckResult(f"h{host:05d}", f"snmp/temperature/Sensor {i}", State.OK,
                           f"Sensor {i} 41 °C", ts,
                           reading=Reading("temperature", f"Sensor {i}", 41.0, "C", 85.0,
                                           98.0, 3.0, 0.0, "ok"))
               for i in range(SENSORS_PER_JOB)]
    return ResultBatch(sender="sat-1", zone="dc1", partition=3, job=f"snmp/h{host:05d}",
                       results=[WireResult.from_result(r) for r in results])


def measure_cpu(n_batches: int = 3000) -> dict[str, float]:
    """µs of CPU per result: satellite encode; master decode + convert + judge."""
    batches = [batch(i % 500, 1.8e9 + i) for i in range(n_batches)]
    t = time.process_time()
    data = [encode(b) for b in batches]
    enc = time.process_time() - t
    engine = StateEngine(CheckConfig(max_attempts=3))
    t = time.process_time()
    for d in data:
        msg = decode(d, expect={"results"})
        assert isinstance(msg, ResultBatch)
        for r in msg.check_results():
            engine.process(r, r.ts)
    dec = time.process_time() - t
    n = n_batches * SENSORS_PER_JOB
    return {"satellite_encode_us": enc / n * 1e6, "master_judge_us": dec / n * 1e6,
            "batch_bytes": sum(len(d) for d in data) / n_batches}


def measure_pg(rows: int = 100_000) -> dict[str, float]:
    """Rows per second PostgreSQL takes for samples (batched) and check_state upserts."""
    name = f"pw_sim_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    store = Store.open(f"{url}/{name}")
    try:
        from poolwarden.incidents.samples import SampleWriter

        writer = SampleWriter(store, batch_size=10_000, max_delay=1e9)
        results = [CheckResult(f"h{i % 3000:05d}", f"snmp/x/{i % 33}", State.OK, "", 1.8e9 + i,
                               reading=Reading("temperature", "x", 40.0))
                   for i in range(rows)]
        t = time.perf_counter()
        for r in results:
            writer.add(r)
        writer.flush()
        samples = rows / (time.perf_counter() - t)
        with store.engine.connect() as conn:
            from sqlalchemy import text

            size = conn.execute(text("SELECT pg_total_relation_size('sample')")).scalar_one()
        row_bytes = size / rows
        from poolwarden.evaluate.state import SavedCheck
        from poolwarden.store.checkstate import CheckStates

        states = CheckStates(store)
        saved = [(SavedCheck(f"h{i:05d}", "snmp/x", State.OK, True, 1, 0, False, 0, 1.0, 1.0),
                  3, "ok", None) for i in range(20_000)]
        t = time.perf_counter()
        for i in range(0, len(saved), 500):
            states.save(0, saved[i:i + 500], None)
        upserts = len(saved) / (time.perf_counter() - t)
    finally:
        store.close()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return {"pg_sample_rows_per_s": samples, "pg_state_upserts_per_s": upserts,
            "pg_sample_bytes_per_row": row_bytes}


def measure_nats(n: int = 3000, size: int = 10_000) -> dict[str, float]:
    """JetStream publishes per second (each acknowledged) of result-sized messages."""
    import asyncio

    import nats

    async def run() -> float:
        nc = await nats.connect("nats://127.0.0.1:4222")
        js = nc.jetstream()
        name = f"SIM{uuid.uuid4().hex[:8].upper()}"
        await js.add_stream(name=name, subjects=[f"{name.lower()}.>"])
        try:
            payload = b"x" * size
            t = time.perf_counter()
            for chunk in range(0, n, 100):  # 100 in flight at a time, as a sender would
                await asyncio.gather(*(js.publish(f"{name.lower()}.r", payload)
                                       for _ in range(chunk, min(n, chunk + 100))))
            return n / (time.perf_counter() - t)
        finally:
            await js.delete_stream(name)
            await nc.close()

    return {"nats_publishes_per_s": asyncio.run(run())}


def model(a: argparse.Namespace, costs: dict[str, float]) -> dict[str, Any]:
    results_s = a.checks / a.interval
    jobs_s = results_s / SENSORS_PER_JOB
    master_ms = a.master_ms_per_result or costs["master_judge_us"] / 1000
    master_cores = results_s * master_ms / 1000
    masters = max(2, int(-(-master_cores // a.master_share)))
    sat_cores = results_s * a.satellite_ms_per_result / 1000
    bus_msgs = 2 * jobs_s + a.zones * 2
    storage_gb = results_s * 86400 * a.retention_days * costs["pg_sample_bytes_per_row"] / 1e9
    limits = {
        "masters needed / partitions": masters / a.partitions,
        "sample inserts / one PostgreSQL's measured rate": results_s
        / costs["pg_sample_rows_per_s"],
        "check_state upserts / measured rate": results_s * a.changed
        / costs["pg_state_upserts_per_s"],
        "JetStream publishes / measured rate": jobs_s / costs["nats_publishes_per_s"],
    }
    return {
        "checks": a.checks, "zones": a.zones, "interval_s": a.interval,
        "results_per_s": round(results_s), "work_items_per_s": round(jobs_s),
        "result_batches_per_s": round(jobs_s), "heartbeats_per_s": a.zones * 2,
        "bus_messages_per_s": round(bus_msgs),
        "bus_mb_per_s": round(jobs_s * costs["batch_bytes"] / 1e6, 1),
        "db_sample_rows_per_s": round(results_s),
        "db_state_rows_per_s": round(results_s * a.changed),
        "master_cores": round(master_cores, 2), "masters_at_share": masters,
        "satellite_cores_total": round(sat_cores, 2),
        "satellite_cores_per_zone": round(sat_cores / a.zones, 3),
        "sample_storage_gb": round(storage_gb),
        "limits": {k: round(v, 2) for k, v in limits.items()},
        "first_bottleneck": max(limits, key=lambda k: limits[k]),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checks", type=int, default=1_000_000)
    ap.add_argument("--zones", type=int, default=50)
    ap.add_argument("--interval", type=float, default=60.0)
    ap.add_argument("--master-share", type=float, default=0.25)
    ap.add_argument("--master-ms-per-result", type=float, default=None,
                    help="whole-process cost measured by bench_distributed.py")
    ap.add_argument("--changed", type=float, default=0.01,
                    help="share of results that change a check's saved state")
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument("--satellite-ms-per-result", type=float, default=0.15,
                    help="whole satellite process (SNMP polls included), from the bench")
    ap.add_argument("--retention-days", type=float, default=7.0)
    a = ap.parse_args()
    costs = {**measure_cpu(), **measure_pg(), **measure_nats()}
    for k, v in costs.items():
        print(f"measured {k}: {v:,.1f}")
    out = model(a, costs)
    for k, v in out.items():
        print(f"{k}: {v}")
    print(json.dumps({"measured": costs, "model": out}))


if __name__ == "__main__":
    main()
