"""SNMPv3 polls with and without what ``collect._v3`` remembers between polls.

Why: a fresh v3 session spends two round trips before its first request (engine id
discovery, then boots/time) and hashes each passphrase into a key (a megabyte of SHA per
key, RFC 3414 §A.2). poolwarden keeps engine ids and master keys per process; this
measures what that saves on N real net-snmp agents (authPriv, SHA + AES), polling the
Dell iDRAC profile as the service does.

    .venv/bin/python bench/bench_snmpv3.py [--agents N] [--rounds N]

"cold" forgets both caches before every round (what each poll cost before); "warm" keeps
them (the steady state). The last line printed is one JSON object for the bench harness.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from pydantic import SecretStr

from poolwarden.collect import _v3
from poolwarden.collect.profile import load_profile
from poolwarden.collect.sensors import AGENT_CHECK, PollJob, poll_many
from poolwarden.lab.bmc import BmcAgent, V3User, stop_agents

RECORDING = "dell-idrac-r640.snmprec"
USER = V3User("poolwarden", auth_key="bench-auth-secret", priv_key="bench-priv-secret")


def forget() -> None:
    """Both caches emptied: the cold path is what the bench measures on purpose."""
    _v3.ENGINES._ids.clear()
    _v3._MASTER_KEYS.clear()


def rounds(jobs: list[PollJob], n: int, limit: int, *, cold: bool) -> dict[str, float]:
    polls = requests = 0
    cpu0, start = time.process_time(), time.perf_counter()
    for _ in range(n):
        if cold:
            forget()
        for results in asyncio.run(poll_many(jobs, limit=limit)).values():
            agent = results[-1]
            assert agent.check == AGENT_CHECK, agent.output
            assert not agent.unreachable, agent.output
            requests += int({p.label: p.value for p in agent.perfdata}["requests"])
            polls += 1
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    return {"polls": polls, "seconds": wall, "polls_per_s": polls / wall,
            "requests_per_poll": requests / polls, "client_cpu_ms_per_poll": cpu / polls * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--limit", type=int, default=20, help="agents polled at once")
    args = parser.parse_args()
    agents = [BmcAgent(RECORDING, profile="dell-idrac", name=f"v3bmc{i:02d}",
                       v3_users=[USER]) for i in range(args.agents)]
    try:
        for agent in agents:
            agent.launch()
        for agent in agents:
            agent.wait_ready()
        profile = load_profile("dell-idrac")
        jobs = [PollJob(a.name, a.target(
            version="v3", community=None, user=USER.name,
            auth_key=SecretStr(USER.auth_key), priv_key=SecretStr(USER.priv_key)), profile)
            for a in agents]
        asyncio.run(poll_many(jobs, limit=args.limit))  # warm-up: imports, sockets
        cold = rounds(jobs, args.rounds, args.limit, cold=True)
        warm = rounds(jobs, args.rounds, args.limit, cold=False)
    finally:
        stop_agents(agents)
    print(f"{args.agents} snmpd agents (SNMPv3 authPriv SHA/AES) serving {RECORDING}, "
          f"{args.rounds} rounds each way")
    for label, row in (("cold (no engine id, no keys kept)", cold),
                       ("warm (engine ids and keys kept)", warm)):
        print(f"  {label:<36} {row['polls_per_s']:>8,.1f} polls/s "
              f"{row['requests_per_poll']:>6.1f} requests/poll "
              f"{row['client_cpu_ms_per_poll']:>6.2f} ms client CPU/poll")
    speedup = warm["polls_per_s"] / cold["polls_per_s"]
    cpu_saved = 1 - warm["client_cpu_ms_per_poll"] / cold["client_cpu_ms_per_poll"]
    print(f"  warm vs cold: {speedup:.2f}× polls/s, {cpu_saved:.0%} less client CPU per poll, "
          f"{cold['requests_per_poll'] - warm['requests_per_poll']:.1f} request(s) fewer")
    print(json.dumps({
        "bench": "snmpv3", "agents": args.agents, "rounds": args.rounds,
        "cold_polls_per_s": round(cold["polls_per_s"], 1),
        "warm_polls_per_s": round(warm["polls_per_s"], 1),
        "cold_requests_per_poll": round(cold["requests_per_poll"], 1),
        "warm_requests_per_poll": round(warm["requests_per_poll"], 1),
        "cold_cpu_ms_per_poll": round(cold["client_cpu_ms_per_poll"], 2),
        "warm_cpu_ms_per_poll": round(warm["client_cpu_ms_per_poll"], 2),
        "speedup": round(speedup, 2),
    }))


if __name__ == "__main__":
    main()
