"""Kill -9 a master while checks and a remediation run: the other takes over in < 10 s,
no incident is lost, the remediation completes exactly once, every notification goes
out once (docs/distributed.md, "Guarantees")."""

from __future__ import annotations

import time
from collections import Counter

from dist_harness import ONCALL, Site, wait_until

from poolwarden.collect.jobs import partition_of

CPU = "snmp/temperature/CPU1 Temp"


def test_kill_a_master_mid_remediation(site: Site) -> None:
    site.write_config()
    site.master("mA")
    site.master("mB")
    site.satellite("sat1")
    # both masters share the partitions before anything happens
    wait_until(lambda: set(site.owners().values()) == {"mA", "mB"}
               and len(site.owners()) == 8, what="both masters owning partitions")
    wait_until(lambda: site.query("SELECT count(*) FROM check_state WHERE host = 'xs1'")[0][0]
               > 20, what="xs1's sensors judged")

    site.lab.bmc["xs1"].set_sensor("temperature", "CPU1 Temp", 105.0)  # crit is 98 °C
    # the remediation starts: master hand-over first, then 4 migrations of ~4 s
    running = wait_until(lambda: site.query(
        "SELECT r.id FROM remediation r JOIN remediation_step s ON s.remediation_id = r.id "
        "WHERE r.status = 'running' AND s.kind = 'migrate_vm' AND s.status = 'running'"),
        what="a migration in flight")
    rid = running[0][0]
    victim = site.owners()[partition_of("dc1-pool", 8)]
    survivor = ({"mA", "mB"} - {victim}).pop()

    killed_at = time.monotonic()
    site.kill(victim)
    wait_until(lambda: set(site.owners().values()) == {survivor}
               and len(site.owners()) == 8, timeout=10, every=0.05,
               what=f"{survivor} owning every partition")
    takeover = time.monotonic() - killed_at
    assert takeover < 10.0

    wait_until(lambda: site.query("SELECT status FROM remediation WHERE id = %s",
                                  rid)[0][0] == "done", timeout=60, what="remediation done")
    # one remediation of xs1, done once; every VM moved exactly once
    assert site.query("SELECT count(*) FROM remediation WHERE host_name = 'xs1' "
                      "AND dry_run = false")[0][0] == 1
    moved = Counter(m.vm for m in site.lab.sim.migrations)
    assert moved == Counter({"vm1": 1, "vm2": 1, "vm3": 1, "vm4": 1}), moved
    snap = site.lab.sim.layout()
    assert snap["xs1"] == []

    # the incident survived the takeover: one, for the CPU, still open
    incidents = site.query("SELECT host, \"check\", status FROM incident WHERE host = 'xs1'")
    assert incidents == [("xs1", CPU, "open")]

    # one firing page and one report, whoever sent them
    def mails() -> Counter[str]:
        return Counter("report" if "maintenance" in m.subject else
                       "firing" if "CPU1 Temp" in m.subject else m.subject
                       for m in site.smtp.received if ONCALL in m.to)

    wait_until(lambda: mails()["report"] == 1 and mails()["firing"] == 1, timeout=30,
               what="the page and the report")
    time.sleep(3)  # nothing more arrives (no duplicate from the survivor)
    assert mails() == Counter({"firing": 1, "report": 1}), [m.subject for m in
                                                           site.smtp.received]
    assert "taken over" in site.log(survivor)
