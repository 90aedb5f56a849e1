"""Two masters never remediate one pool at once: the pool's partition moves to a new
master in the middle of a remediation, and the newcomer waits for the pool lease."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import nats
from dist_harness import ONCALL, Site, api, token, wait_until

from poolwarden.collect.jobs import partition_of
from poolwarden.distributed.cluster import rendezvous

ACTIVE = "SELECT count(*) FROM remediation WHERE status IN ('planned', 'running')"


def test_a_partition_moving_mid_remediation_never_doubles_it(site: Site) -> None:
    part = partition_of("dc1-pool", 8)
    newcomer = next(n for n in (f"mB{i}" for i in range(1000))
                    if rendezvous(["mA", n], 8)[part] == n)
    site.write_config(remediation={"retry_after": "1s"})
    site.master("mA")
    site.satellite("sat1")
    wait_until(lambda: len(site.owners()) == 8, what="mA owning every partition")
    wait_until(lambda: site.query("SELECT count(*) FROM check_state WHERE host = 'xs1'"
                                  )[0][0] > 20, what="xs1's sensors judged")
    site.lab.bmc["xs1"].set_sensor("temperature", "CPU1 Temp", 105.0)
    wait_until(lambda: site.query(
        "SELECT 1 FROM remediation_step WHERE kind = 'migrate_vm' AND status = 'running'"),
        what="a migration in flight")

    site.master(newcomer)  # rendezvous gives it the pool's partition
    most_active, owners = 0, set()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        most_active = max(most_active, site.query(ACTIVE)[0][0])
        owners.add(site.owners().get(part))
        if site.query("SELECT count(*) FROM remediation WHERE status = 'done'")[0][0] and \
                "skipped" in site.log(newcomer):
            break
        time.sleep(0.1)
    assert newcomer in owners  # the partition did move while the remediation ran
    assert most_active == 1  # never two remediations of the pool at once
    assert "is busy" in site.log(newcomer)  # the newcomer was held off by the pool lease
    # the old owner finished the remediation it had started, after handing the pool over
    assert "evacuate (rule overheat): done" in site.log("mA")
    assert "Traceback" not in site.log("mA")
    assert site.query("SELECT count(*), min(status) FROM remediation") == [(1, "done")]
    assert Counter(m.vm for m in site.lab.sim.migrations) == Counter(
        {"vm1": 1, "vm2": 1, "vm3": 1, "vm4": 1})
    wait_until(lambda: sum("maintenance" in m.subject for m in site.smtp.received
                           if ONCALL in m.to) == 1, what="the report")
    time.sleep(2)
    assert sum("maintenance" in m.subject for m in site.smtp.received) == 1


def test_garbage_on_the_bus_is_rejected_counted_and_survived(site: Site) -> None:
    site.write_config()
    site.master("mA")
    site.satellite("sat1")
    wait_until(lambda: len(site.owners()) == 8, what="mA owning every partition")

    async def spray() -> None:
        nc = await nats.connect(site.nats_url)
        js = nc.jetstream()
        for p in range(8):
            await js.publish(f"{site.prefix}.results.{p}", b"\xff not json")
            await js.publish(f"{site.prefix}.results.{p}",
                             b'{"v": 99, "kind": "results"}')
        await nc.publish(f"{site.prefix}.heartbeat.dc1.evil", b'{"v": 1, "kind": "work"}')
        await nc.flush()
        await nc.close()

    asyncio.run(spray())
    viewer = token(site)

    def rejected() -> float:
        text = api(site, "mA", "/metrics", viewer, raw=True)
        return sum(float(line.rpartition(" ")[2]) for line in text.splitlines()
                   if line.startswith("poolwarden_bus_rejected_total{"))

    wait_until(lambda: rejected() >= 17, what="17 rejections counted")
    assert rejected() == 17
    assert site.procs["mA"].poll() is None
    # and the master goes on judging real results
    before = site.query("SELECT count(*) FROM sample")[0][0]
    wait_until(lambda: site.query("SELECT count(*) FROM sample")[0][0] > before,
               what="results still flowing")
