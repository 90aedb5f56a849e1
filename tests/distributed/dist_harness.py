"""Harness for the distributed tests: real processes against the real NATS
(127.0.0.1:4222, JetStream) and PostgreSQL (127.0.0.1:5432) of this machine.

``site`` gives each test a fresh PostgreSQL database, its own NATS subject/stream prefix
(removed afterwards), a running lab (XenAPI simulator + one snmpd per host), an SMTP sink,
and a :class:`Site` that writes poolwarden.yaml and starts, kills and reads the logs of
``poolwarden master`` / ``poolwarden satellite`` processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import psycopg
import yaml

from poolwarden.lab import Lab
from poolwarden.notify.sinks import SmtpSink
from poolwarden.store.db import Store

PG_ADMIN = os.environ.get("POOLWARDEN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
NATS_URL = "nats://127.0.0.1:4222"
ONCALL = "oncall@example.com"

LAYOUT = {
    "pool": {"name": "dc1-pool", "master": "xs1"},
    "hosts": [{"name": n, "memory_gib": 96, "bmc": {"profile": "dell-idrac"}}
              for n in ("xs1", "xs2", "xs3")],
    "vms": [{"name": f"vm{i}", "memory_gib": 8, "host": "xs1"} for i in range(1, 5)]
    + [{"name": "vm5", "memory_gib": 8, "host": "xs2"}],
    "credentials": {"user": "root", "password": "lab"},
    # 8 GiB at 2 GiB/s: 4 s per migration, so a master can be killed mid-remediation
    "migration": {"speed_gib_per_s": 2},
}


def wait_until(cond: Callable[[], Any], timeout: float = 30.0, what: str = "condition",
               every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what} not reached in {timeout:.0f} s")


@dataclass
class Site:
    tmp: Path
    db_url: str
    prefix: str
    lab: Lab
    smtp: SmtpSink
    nats_url: str = NATS_URL
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.tmp / "poolwarden.yaml"

    def write_config(self, zone: str | None = "dc1", **overrides: Any) -> Path:
        hosts = []
        for name, endpoint in self.lab.summary()["snmp"].items():
            address, port = endpoint.rsplit(":", 1)
            hosts.append({"name": name, "address": "127.0.0.1", "bmc": {
                "address": address, "port": int(port), "profile": "dell-idrac",
                "snmp": {"timeout": "500ms", "retries": 0}}})
        cfg: dict[str, Any] = {
            "store": {"url": self.db_url},
            "bus": {"url": self.nats_url},
            "api": {"listen": "127.0.0.1:0"},
            "cluster": {"prefix": self.prefix, "partitions": 8},
            "monitoring": {"snmp_interval": "1s", "retry_interval": "500ms",
                           "max_attempts": 2, "pool_interval": "5s"},
            "pools": [{"name": "dc1-pool", **({"zone": zone} if zone else {}),
                       "xapi": {"url": self.lab.urls[self.lab.master_name], "user": "root",
                                "password": "lab"}, "hosts": hosts}],
            "rules": [{"name": "overheat", "action": "evacuate", "severity": "critical",
                       "match": {"kind": "temperature", "state": "CRITICAL"}}],
            "remediation": {"max_hosts_down_per_pool": 1, "max_actions_per_pool_per_hour": 3},
            "notify": {"receivers": {"oncall": [self.smtp.url(to=ONCALL)]},
                       "routes": [{"match": {"severity": "critical"},
                                   "receivers": ["oncall"]}],
                       "group_wait": "1s", "group_interval": "5m", "repeat_interval": "4h",
                       "send_backoff": "200ms"},
        }
        for key, value in {**self.overrides, **overrides}.items():
            cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
        self.config.write_text(yaml.safe_dump(cfg))
        return self.config

    def start(self, role: str, name: str, *extra: str) -> subprocess.Popen[bytes]:
        if not self.config.exists():
            self.write_config()
        argv = [sys.executable, "-m", "poolwarden", role, "--config", str(self.config),
                "--name", name, *extra]
        log = (self.tmp / f"{name}.log").open("wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs[name] = proc
        return proc

    def master(self, name: str) -> subprocess.Popen[bytes]:
        return self.start("master", name)

    def satellite(self, name: str, zone: str = "dc1") -> subprocess.Popen[bytes]:
        return self.start("satellite", name, "--zone", zone)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        proc.send_signal(sig)
        proc.wait(timeout=30)

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        plain = self.db_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain) as conn:
            return list(conn.execute(sql, args).fetchall())  # type: ignore[arg-type]

    def owners(self) -> dict[int, str]:
        """partition → holder of its live lease."""
        return {int(name.split(":")[1]): holder for name, holder in self.query(
            "SELECT name, holder FROM lease WHERE name LIKE 'partition:%%' "
            "AND expires_at >= extract(epoch from now())")}

    def store(self) -> Store:
        return Store.open(self.db_url)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def api(site: Site, master: str, path: str, token: str, *, raw: bool = False) -> Any:
    port = re.search(r"API and dashboard on 127\.0\.0\.1:(\d+)", site.log(master))
    assert port, site.log(master)
    req = urllib.request.Request(f"http://127.0.0.1:{port.group(1)}{path}",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        body = resp.read()
    return body.decode() if raw else json.loads(body)


def token(site: Site) -> str:
    made = subprocess.run(
        [sys.executable, "-m", "poolwarden", "token", "create", "--role", "viewer",
         "--name", "test", "--store", site.db_url, "--json"],
        capture_output=True, text=True, timeout=60, check=True)
    return str(json.loads(made.stdout)["token"])


async def delete_streams(url: str, prefix: str) -> None:
    """Remove a test's streams from the shared server (a private one is gone already)."""
    if url != NATS_URL:
        return
    nc = await asyncio.wait_for(nats.connect(url, connect_timeout=2, allow_reconnect=False),
                                10)
    js = nc.jetstream()
    for stream in (f"{prefix.upper()}_WORK", f"{prefix.upper()}_RESULTS"):
        with contextlib.suppress(Exception):  # absent already
            await js.delete_stream(stream)
    await nc.close()
