"""Check throughput: the distributed mode (2 masters + 2 satellites over NATS JetStream,
PostgreSQL) and the single-process mode (`poolwarden run`, SQLite), in the same run,
against the same lab of iDRAC agents (real snmpd, ~33 sensor checks each).

    .venv/bin/python bench/bench_distributed.py [--hosts 455] [--interval 60] [--window 120]
    .venv/bin/python bench/bench_distributed.py --quick      # 120 hosts, 20 s, 40 s window

Each mode warms up for one interval plus 15 s (every job has run once), then is measured
over ``--window`` seconds: CPU of each process (utime+stime from /proc, in % of one core),
results judged per second (the masters' poolwarden_results_total), scheduler lateness (how
late a job was *dispatched*: masters' /metrics) and satellite lateness (work issued →
started, from the satellites' status lines).

Target (the Citrix CloudOps Icinga figure, 14,000+ checks): 15,000 checks at a 60 s
interval, each master below 25 % of a core, no scheduler lateness. The machine has two
cores shared by everything: the agents, NATS, PostgreSQL, the processes measured.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
import psycopg
import yaml

from poolwarden.api.auth import create_token
from poolwarden.lab import Lab, Layout
from poolwarden.store.db import Store

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metrics(port: int, token: str) -> dict[str, float]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("poolwarden_results_total", "poolwarden_scheduler_lateness",
                            "poolwarden_checks{", "poolwarden_partitions_owned")):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def config(lab: Lab, tmp: Path, *, distributed: bool, db: str, prefix: str, interval: float,
           port: int) -> Path:
    hosts = []
    for name, endpoint in lab.summary()["snmp"].items():
        address, p = endpoint.rsplit(":", 1)
        hosts.append({"name": name, "bmc": {"address": address, "port": int(p),
                                            "profile": "dell-idrac",
                                            "snmp": {"timeout": "2s", "retries": 1}}})
    cfg: dict[str, Any] = {
        "store": {"url": db}, "api": {"listen": f"127.0.0.1:{port}"},
        "monitoring": {"snmp_interval": f"{interval}s", "concurrency": 200},
        "pools": [{"name": f"pool{i // 16:02d}", "hosts": hosts[i:i + 16],
                   **({"zone": "dc1"} if distributed else {})}
                  for i in range(0, len(hosts), 16)],
    }
    if distributed:
        cfg["bus"] = {"url": "nats://127.0.0.1:4222"}
        cfg["cluster"] = {"prefix": prefix, "partitions": 16}
    path = tmp / ("distributed.yaml" if distributed else "embedded.yaml")
    path.write_text(yaml.safe_dump(cfg))
    return path


async def drop_streams(prefix: str) -> None:
    """The bench's streams go with it (the NATS server is shared)."""
    nc = await nats.connect("nats://127.0.0.1:4222")
    js = nc.jetstream()
    for stream in (f"{prefix.upper()}_WORK", f"{prefix.upper()}_RESULTS"):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(stream)
    await nc.close()


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "poolwarden", *args],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    time.sleep(2)
    if proc.poll() is not None:
        raise RuntimeError(f"poolwarden {args[0]} exited {proc.returncode}:\n"
                           + log.read_text(errors="replace")[-3000:])
    return proc


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()


def measure(procs: dict[str, subprocess.Popen[bytes]], ports: dict[str, int], token: str,
            window: float) -> dict[str, Any]:
    before = {n: cpu_seconds(p.pid) for n, p in procs.items()}
    m0 = {n: metrics(port, token) for n, port in ports.items()}
    t0 = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - t0
    after = {n: cpu_seconds(p.pid) for n, p in procs.items()}
    m1 = {n: metrics(port, token) for n, port in ports.items()}
    cpu = {n: round(100 * (after[n] - before[n]) / elapsed, 1) for n in procs}
    results = sum(m1[n].get("poolwarden_results_total", 0) - m0[n].get(
        "poolwarden_results_total", 0) for n in ports)
    checks = sum(v for n in ports for k, v in m1[n].items() if k.startswith("poolwarden_checks{"))
    late = max(m1[n].get('poolwarden_scheduler_lateness_seconds{stat="max"}', 0.0)
               for n in ports)
    return {"cpu_pct": cpu, "results_per_s": round(results / elapsed, 1),
            "checks": int(checks), "scheduler_lateness_max_s": round(late, 3)}


def satellite_lateness(log: Path) -> float | None:
    found = re.findall(r"lateness max ([0-9.]+)s", log.read_text(errors="replace"))
    return float(found[-1]) if found else None


def run(hosts: int, interval: float, window: float) -> dict[str, Any]:
    layout = Layout.model_validate({
        "pool": {"name": "bench", "master": "h000"},
        "hosts": [{"name": f"h{i:03d}", "memory_gib": 64, "bmc": {"profile": "dell-idrac"}}
                  for i in range(hosts)],
        "vms": [], "credentials": {"user": "root", "password": "lab"}})
    warmup = interval + 15
    out: dict[str, Any] = {"hosts": hosts, "interval_s": interval, "window_s": window}
    with tempfile.TemporaryDirectory(prefix="pw-bench-dist-") as t, Lab(layout) as lab:
        tmp = Path(t)
        # -- the single-process mode ------------------------------------------------------
        db = f"sqlite:///{tmp / 'embedded.db'}"
        token = create_token(store := Store.open(db), "viewer", "bench")
        store.close()
        port = free_port()
        proc = start(["run", "--config", str(config(lab, tmp, distributed=False, db=db,
                                                      prefix="", interval=interval,
                                                      port=port))], tmp / "run.log")
        try:
            time.sleep(warmup)
            out["embedded"] = measure({"run": proc}, {"run": port}, token, window)
        finally:
            stop([proc])
        print(f"embedded: {out['embedded']}", flush=True)
        # -- the distributed mode ---------------------------------------------------------
        name = f"pw_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        pg = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        db = f"{pg}/{name}"
        token = create_token(store := Store.open(db), "viewer", "bench")
        store.close()
        prefix = "b" + uuid.uuid4().hex[:8]
        ports = {"master-a": free_port(), "master-b": free_port()}
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for n, p in ports.items():
                cfg = config(lab, tmp, distributed=True, db=db, prefix=prefix,
                             interval=interval, port=p)
                procs[n] = start(["master", "--config", str(cfg), "--name", n],
                                 tmp / f"{n}.log")
            for n in ("sat-1", "sat-2"):
                procs[n] = start(["satellite", "--zone", "dc1", "--config", str(cfg),
                                  "--name", n], tmp / f"{n}.log")
            time.sleep(warmup)
            out["distributed"] = measure(procs, ports, token, window)
            out["distributed"]["satellite_lateness_max_s"] = {
                n: satellite_lateness(tmp / f"{n}.log") for n in ("sat-1", "sat-2")}
        finally:
            stop(list(procs.values()))
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            asyncio.run(drop_streams(prefix))
        print(f"distributed: {out['distributed']}", flush=True)
    d = out["distributed"]
    masters = [d["cpu_pct"][n] for n in ports]
    out["summary"] = {
        "checks": d["checks"], "checks_per_60s_equivalent": round(
            d["checks"] * 60 / interval),
        "masters_cpu_pct_max": max(masters),
        "target_met": d["checks"] >= 14_000 and interval >= 60 and max(masters) < 25
        and d["scheduler_lateness_max_s"] < 1.0,
        "embedded_cpu_pct": out["embedded"]["cpu_pct"]["run"],
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=455)
    ap.add_argument("--interval", type=float, default=60.0)
    ap.add_argument("--window", type=float, default=120.0)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.hosts, a.interval, a.window = 120, 20.0, 40.0
    result = run(a.hosts, a.interval, a.window)
    s = result["summary"]
    print(f"{s['checks']} checks at {a.interval:g} s; masters ≤ {s['masters_cpu_pct_max']} % "
          f"of a core each; single process {s['embedded_cpu_pct']} %; target met: "
          f"{s['target_met']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
