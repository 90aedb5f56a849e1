"""Satellites come and go: a zone of two survives one; a zone of none is one problem."""

from __future__ import annotations

import time

from dist_harness import Site, api, token, wait_until

INTERVAL = 3.0  # the check interval of this test (seconds)


def newest_samples(site: Site) -> dict[str, float]:
    return dict(site.query("SELECT host, max(ts) FROM sample GROUP BY host"))


def test_a_zone_survives_one_satellite_and_reports_losing_all(site: Site) -> None:
    site.write_config(monitoring={"snmp_interval": f"{INTERVAL}s"})
    site.master("mA")
    site.master("mB")
    site.satellite("sat1")
    site.satellite("sat2")
    hosts = {"xs1", "xs2", "xs3"}
    wait_until(lambda: set(newest_samples(site)) == hosts, what="samples of every host")
    # both satellites take work from the zone's one queue
    wait_until(lambda: "satellites: " in site.log("mA") + site.log("mB")
               or all(site.log(s) for s in ("sat1", "sat2")), what="satellites up")

    site.kill("sat1")
    killed = time.time()
    # within one check interval every host is polled again, by sat2
    wait_until(lambda: all(t > killed for t in newest_samples(site).values()),
               timeout=INTERVAL + 2.0, every=0.2, what="checks continuing on sat2")
    assert site.query("SELECT count(*) FROM incident")[0][0] == 0

    site.kill("sat2")
    zone = wait_until(lambda: site.query(
        "SELECT id, status, state FROM incident WHERE host = 'zone:dc1'"),
        timeout=15, what="the zone problem")
    assert zone[0][1:] == ("open", "CRITICAL")
    time.sleep(INTERVAL * 2)  # several check intervals without any satellite
    # one problem: the zone; no incident for any host or sensor
    assert site.query("SELECT host, \"check\" FROM incident") == [
        ("zone:dc1", "zone/reachable")]
    viewer = token(site)
    for master in ("mA", "mB"):  # each master's board: the zone's checks are UNKNOWN
        checks = api(site, master, "/api/v1/checks", viewer)
        mine = [c for c in checks if c["host"] in hosts]
        assert len(mine) > 60
        assert {c["state"] for c in mine} == {"UNKNOWN"}
        assert all(c["unreachable"] for c in mine)

    site.satellite("sat3")
    wait_until(lambda: site.query("SELECT status FROM incident WHERE host = 'zone:dc1'"
                                  )[0][0] == "resolved", timeout=15, what="zone back")
    checks = wait_until(lambda: [c for c in api(site, "mA", "/api/v1/checks", viewer)
                                 if c["host"] in hosts and c["state"] == "OK"],
                        what="OK again")
    assert len(checks) > 60
    assert site.query("SELECT count(*) FROM incident")[0][0] == 1
