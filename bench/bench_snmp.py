"""SNMP throughput: sensor values per second one poolwarden process reads from N agents.

Why: a site has hundreds of BMCs; the classic way (a plugin forking ``snmpget`` per
metric) reads ~175 values/s on this machine kind (SNMP.md), which caps a poller long
before the network does. Targets: at least 50× the fork-per-metric loop, and not slower
than net-snmp's own ``snmpbulkwalk`` reading the same tables.

Setup: N lab agents (real net-snmp ``snmpd``, loopback) serve the Dell R640 recording.
Measured in the same run, over the same OIDs:
  poolwarden  ``poll_many`` (walk every profile table, engine, CheckResults), bounded
              concurrency; the figure counts SNMP values read (varbinds).
  walk only   the same walks through ``collect.snmp.fetch``, no engine (client ceiling).
  fork        a shell loop forking ``snmpget`` once per value, on a bounded sample of
              the same OIDs, rate extrapolated.
  bulkwalk    a shell loop running ``snmpbulkwalk`` (same max-repetitions) once per
              table per agent — the same requests, one process per table.
  bulkwalk/1  best case for net-snmp: one ``snmpbulkwalk`` of the whole Dell subtree per
              agent (more values per process start; not the same OIDs).

    .venv/bin/python bench/bench_snmp.py [--agents N] [--rounds N] [--fork-sample N]

The last line printed is one JSON object for the bench harness.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import time

from poolwarden.collect.profile import load_profile
from poolwarden.collect.sensors import AGENT_CHECK, PollJob, poll_many
from poolwarden.collect.snmp import fetch, gather_bounded
from poolwarden.lab.bmc import BmcAgent, start_agents, stop_agents

RECORDING = "dell-idrac-r640.snmprec"
ENV = {**os.environ, "MIBS": ""}


def shell(script: str) -> tuple[float, str]:
    """Run a bash loop; wall seconds and its stdout."""
    start = time.perf_counter()
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=ENV,
                          check=True, timeout=600)
    return time.perf_counter() - start, done.stdout


def bench_poolwarden(agents: list[BmcAgent], rounds: int, limit: int) -> dict[str, float]:
    profile = load_profile("dell-idrac")
    jobs = [PollJob(a.name, a.target(), profile) for a in agents]
    asyncio.run(poll_many(jobs, limit=limit))  # warm-up: imports, sockets, caches
    values = sensors = requests = 0
    cpu0, start = time.process_time(), time.perf_counter()
    for _ in range(rounds):
        for results in asyncio.run(poll_many(jobs, limit=limit)).values():
            agent = results[-1]
            assert agent.check == AGENT_CHECK, agent.output
            assert not agent.unreachable, agent.output
            perf = {p.label: p.value for p in agent.perfdata}
            values += int(perf["values"])
            requests += int(perf["requests"])
            sensors += len(results) - 1
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    return {"values": values, "sensors": sensors, "requests": requests, "seconds": wall,
            "values_per_s": values / wall, "sensors_per_s": sensors / wall,
            "client_cpu_share": cpu / wall}


def bench_walk_only(agents: list[BmcAgent], rounds: int, limit: int) -> dict[str, float]:
    walks = load_profile("dell-idrac").walk_oids

    async def one_round() -> int:
        fetched = await gather_bounded(
            [lambda a=a: fetch(a.target(), walks=walks) for a in agents], limit)
        return sum(len(f.values) for f in fetched)

    values, start = 0, time.perf_counter()
    for _ in range(rounds):
        values += asyncio.run(one_round())
    wall = time.perf_counter() - start
    return {"values": values, "seconds": wall, "values_per_s": values / wall}


def bench_fork(agents: list[BmcAgent], oids: list[str], sample: int) -> dict[str, float]:
    """One ``snmpget`` process per value, spread over the agents, as cron+plugins do."""
    lines = [f"snmpget -v2c -c public -Oqv -On {agents[i % len(agents)].address} {oid}"
             for i, oid in enumerate((oids * (sample // len(oids) + 1))[:sample])]
    wall, _ = shell("\n".join(f"{line} >/dev/null" for line in lines))
    return {"values": sample, "seconds": wall, "values_per_s": sample / wall}


def bench_bulkwalk(agents: list[BmcAgent], walks: list[str], max_rep: int,
                   whole: str | None = None) -> dict[str, float]:
    targets = [whole] if whole else walks
    script = "\n".join(f"snmpbulkwalk -v2c -c public -Cr{max_rep} -On {a.address} {oid}"
                       for a in agents for oid in targets)
    wall, out = shell(script)
    values = sum(1 for line in out.splitlines()
                 if line.startswith(".1.") and "No Such" not in line)
    return {"values": values, "seconds": wall, "values_per_s": values / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10, help="poll rounds over all agents")
    parser.add_argument("--limit", type=int, default=20, help="agents polled at once")
    parser.add_argument("--fork-sample", type=int, default=200,
                        help="snmpget processes to time (bounded)")
    args = parser.parse_args()
    for tool in ("snmpd", "snmpget", "snmpbulkwalk"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            raise SystemExit(f"{tool} is required (Debian packages snmpd and snmp)")

    agents_by_name = start_agents({f"bmc{i:02d}": {"profile": "dell-idrac",
                                                   "recording": RECORDING}
                                   for i in range(args.agents)})
    agents = list(agents_by_name.values())
    try:
        profile = load_profile("dell-idrac")
        first = agents[0]
        max_rep = first.target().max_repetitions
        oids = sorted(asyncio.run(fetch(first.target(), walks=profile.walk_oids)).values)
        pw = bench_poolwarden(agents, args.rounds, args.limit)
        walk = bench_walk_only(agents, args.rounds, args.limit)
        fork = bench_fork(agents, oids, args.fork_sample)
        bulk = bench_bulkwalk(agents, profile.walk_oids, max_rep)
        bulk1 = bench_bulkwalk(agents, profile.walk_oids, max_rep,
                               whole="1.3.6.1.4.1.674.10892.5")
    finally:
        stop_agents(agents)

    ratio_fork = pw["values_per_s"] / fork["values_per_s"]
    ratio_bulk = pw["values_per_s"] / bulk["values_per_s"]
    print(f"{args.agents} snmpd agents serving {RECORDING}; {len(oids)} values per agent "
          f"in {len(profile.walk_oids)} table walks (max-repetitions {max_rep})")
    rows = [
        ("poolwarden poll_many (walk + engine)", pw),
        ("poolwarden walks only (no engine)", walk),
        (f"fork snmpget per value ({args.fork_sample} sampled)", fork),
        ("snmpbulkwalk per table (same OIDs)", bulk),
        ("snmpbulkwalk whole Dell subtree/agent", bulk1),
    ]
    for label, row in rows:
        print(f"  {label:<42} {row['values']:>8.0f} values {row['seconds']:>7.2f} s "
              f"{row['values_per_s']:>10,.0f} values/s")
    print(f"  poolwarden: {pw['sensors_per_s']:,.0f} sensors/s, "
          f"{pw['values'] / pw['requests']:.1f} values per request, "
          f"client CPU {pw['client_cpu_share']:.0%} of wall time (the rest: waiting on "
          "agents and the kernel; agents and client share the same cores)")
    verdict_fork = "OK" if ratio_fork >= 50 else "BELOW TARGET"
    verdict_bulk = "OK" if ratio_bulk >= 1 else "BELOW TARGET"
    print(f"  ratio vs fork-per-metric: {ratio_fork:,.0f}× (target ≥ 50×: {verdict_fork})")
    print(f"  ratio vs snmpbulkwalk:    {ratio_bulk:.1f}× (target ≥ 1×: {verdict_bulk}); "
          f"vs its whole-subtree best case {pw['values_per_s'] / bulk1['values_per_s']:.2f}×")
    print(json.dumps({
        "bench": "snmp", "agents": args.agents, "rounds": args.rounds,
        "values_per_s": round(pw["values_per_s"]),
        "sensors_per_s": round(pw["sensors_per_s"]),
        "walk_only_values_per_s": round(walk["values_per_s"]),
        "fork_snmpget_values_per_s": round(fork["values_per_s"], 1),
        "snmpbulkwalk_values_per_s": round(bulk["values_per_s"]),
        "snmpbulkwalk_subtree_values_per_s": round(bulk1["values_per_s"]),
        "ratio_vs_fork": round(ratio_fork, 1), "ratio_vs_bulkwalk": round(ratio_bulk, 2),
        "values_per_request": round(pw["values"] / pw["requests"], 1),
        "client_cpu_share": round(pw["client_cpu_share"], 2),
    }))


if __name__ == "__main__":
    main()
