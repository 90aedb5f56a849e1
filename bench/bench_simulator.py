"""Requests per second of the official XenAPI SDK against the lab's pool simulator.

The lab runs in a child process (so server and clients do not share one interpreter
lock), serving the packaged demo layout; N client threads each log in and loop over a mix
of ``host.get_record``, ``VM.get_all_records`` and ``pool.get_master`` for a few seconds,
then ``pool.get_master`` alone (round-trip overhead) for half as long.

    .venv/bin/python bench/bench_simulator.py [--clients 4] [--seconds 3] [--in-process]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import threading
import time
from importlib import resources
from multiprocessing.connection import Connection
from typing import Any

import XenAPI

from poolwarden.lab import Lab, load_layout

MAX_REQUESTS_PER_CLIENT = 1_000_000  # a bound on the loop besides the clock


def _demo_lab() -> Lab:
    path = resources.files("poolwarden.lab").joinpath("data/demo-layout.yaml")
    return Lab(load_layout(str(path)))


def _serve(conn: Connection) -> None:
    """Child process: run the lab until the parent says stop."""
    lab = _demo_lab().start()
    conn.send(lab.summary())
    conn.recv()
    lab.stop()


def _client(url: str, deadline: float, counts: list[int], index: int, light: bool) -> None:
    session = XenAPI.Session(url)
    session.xenapi.login_with_password("root", "lab", "1.0", "bench")
    pool = session.xenapi.pool.get_all()[0]
    master = session.xenapi.pool.get_master(pool)
    calls = (
        lambda: session.xenapi.host.get_record(master),
        session.xenapi.VM.get_all_records,
        lambda: session.xenapi.pool.get_master(pool),
    )[2 if light else 0 :]
    done = 0
    while done < MAX_REQUESTS_PER_CLIENT and time.monotonic() < deadline:
        calls[done % len(calls)]()
        done += 1
    counts[index] = done
    session.xenapi.session.logout()
    session("close")()


def _phase(url: str, clients: int, seconds: float, *, light: bool) -> tuple[int, float]:
    """(requests, seconds) of ``clients`` threads hammering ``url`` for ``seconds``."""
    counts = [0] * clients
    started = time.monotonic()
    threads = [
        threading.Thread(target=_client, args=(url, started + seconds, counts, i, light))
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts), time.monotonic() - started


def run(clients: int, seconds: float, in_process: bool) -> dict[str, Any]:
    lab: Lab | None = None
    if in_process:
        lab = _demo_lab().start()
        summary = lab.summary()
    else:
        parent, child = mp.get_context("spawn").Pipe()
        proc = mp.get_context("spawn").Process(target=_serve, args=(child,), daemon=True)
        proc.start()
        summary = parent.recv()
    url = summary["xapi"][summary["master"]]
    total, elapsed = _phase(url, clients, seconds, light=False)
    light_total, light_elapsed = _phase(url, clients, seconds / 2, light=True)
    if lab is not None:
        lab.stop()
    else:
        parent.send("stop")
        proc.join(10)
    return {
        "bench": "simulator", "requests_per_s": round(total / elapsed, 1), "clients": clients,
        "seconds": round(elapsed, 2), "requests": total,
        "mix": ["host.get_record", "VM.get_all_records", "pool.get_master"],
        "light_requests_per_s": round(light_total / light_elapsed, 1),
        "server": "in-process" if in_process else "child process",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--in-process", action="store_true",
                        help="run the lab in this process (shares the GIL with the clients)")
    args = parser.parse_args()
    result = run(args.clients, args.seconds, args.in_process)
    print(f"lab simulator ({result['server']}): {result['requests']} SDK requests "
          f"from {result['clients']} clients in {result['seconds']} s")
    print(f"  mix: {', '.join(result['mix'])}")
    print(f"  throughput: {result['requests_per_s']} requests/s")
    print(f"  pool.get_master alone: {result['light_requests_per_s']} requests/s "
          "(VM.get_all_records is ~95 kB of XML: the SDK's parsing dominates the mix)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
