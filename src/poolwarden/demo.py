"""The demo: the overheating-host scenario, end to end, on the lab, with no other input.

What runs is the real thing, wired as ``poolwarden run`` wires it (SQLite store,
in-process bus), against the lab: a XenAPI pool simulator and one real ``snmpd`` per host
serving iDRAC recordings. Notifications go to two local receivers the demo starts: an SMTP
sink (email) and a webhook receiver (standing in for a chat/SMS gateway).

1. The pool master's CPU1 temperature is pushed past the iDRAC's own critical threshold.
   poolwarden detects it (SOFT → HARD), hands the master role to a healthy host,
   live-migrates the VMs, disables the host, pages on-call (webhook + email) and reports.
2. A power supply of another host fails: a warning, emailed to the sysadmins — no page,
   no action.

The verdict compares the report with the pool read back through XenAPI afterwards.
"""

from __future__ import annotations

import asyncio
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from poolwarden.config.models import Config
from poolwarden.errors import NotFound, OperationRefused
from poolwarden.hypervisor.base import PoolSnapshot
from poolwarden.hypervisor.xenapi import XenAPIDriver
from poolwarden.lab import Lab, Layout
from poolwarden.notify.sinks import SmtpSink, WebhookSink
from poolwarden.remediate.executor import ExecutorSettings
from poolwarden.service import Monitor
from poolwarden.store.db import Store

ONCALL, SYSADMINS = "oncall@example.com", "sysadmins@example.com"
OVERHEAT_MARGIN = 3.0  # °C above the device's critical threshold
TIMEOUT = 90.0
DESTRUCTIVE = ("evacuate", "shutdown", "script")


@dataclass
class DemoResult:
    pool: str
    host: str  # the overheating host (the master)
    detected_at: float | None = None
    fault_at: float = 0.0
    remediation: dict[str, Any] = field(default_factory=dict)  # the engine's report
    history: list[dict[str, Any]] = field(default_factory=list)
    psu_host: str | None = None
    psu_actions: int = 0  # remediations the PSU failure caused (must be 0)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    mails: list[dict[str, str]] = field(default_factory=list)
    hooks: list[dict[str, Any]] = field(default_factory=list)
    before: PoolSnapshot | None = None
    after: PoolSnapshot | None = None
    problems: list[str] = field(default_factory=list)
    #: with --serve: the API's url and an admin token, the dashboard's url and login
    api: dict[str, Any] | None = None


def demo_config(lab: Lab, layout: Layout, db: str, smtp: SmtpSink,
                hook: WebhookSink) -> Config:
    """poolwarden.yaml for the lab, as a user would write it (fast intervals for a demo)."""
    hosts = []
    for name, endpoint in lab.summary()["snmp"].items():
        address, port = endpoint.rsplit(":", 1)
        profile = lab.bmc[name].profile
        hosts.append({"name": name, "bmc": {
            "address": address, "port": int(port),
            "profile": profile.name if profile else "auto",
            "snmp": {"timeout": "500ms", "retries": 1}}})
    return Config.model_validate({
        "store": {"url": f"sqlite:///{db}"},
        "monitoring": {"snmp_interval": "1s", "retry_interval": "500ms", "max_attempts": 2},
        "pools": [{"name": layout.pool.name, "hosts": hosts, "xapi": {
            "url": lab.urls[lab.master_name], "user": layout.credentials.user,
            "password": layout.credentials.password}}],
        "rules": [
            {"name": "cpu-or-inlet-overheating", "action": "evacuate", "severity": "critical",
             "match": {"kind": "temperature", "state": "CRITICAL"}},
            {"name": "psu-or-fan-failed", "action": "notify", "severity": "warning",
             "match": {"kind": ["power_supply", "fan", "redundancy"],
                       "state": ["WARNING", "CRITICAL"]}},
        ],
        "remediation": {"max_hosts_down_per_pool": 1, "max_actions_per_pool_per_hour": 3},
        "notify": {
            "receivers": {"oncall": [hook.url(), smtp.url(to=ONCALL)],
                          "sysadmins": [smtp.url(to=SYSADMINS)]},
            "routes": [
                {"match": {"severity": "critical"}, "receivers": ["oncall", "sysadmins"]},
                {"match": {"severity": "warning"}, "receivers": ["sysadmins"]},
            ],
            "group_wait": "1s", "group_interval": "5m", "repeat_interval": "4h",
            "send_backoff": "200ms",
        },
    })


async def _until(cond: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise TimeoutError(f"the demo waited {timeout:.0f} s for {what}")


def _psu_host(lab: Lab, exclude: str) -> str | None:
    """Another host whose BMC can fail its PSU1 (its recording has PSU status); it fails."""
    for name, agent in lab.bmc.items():
        if name == exclude:
            continue
        try:
            agent.fail_psu("PS1 Status")
        except (NotFound, OperationRefused):  # no such sensor, or no status to set
            continue
        return name
    return None


def _destructive(monitor: Monitor) -> int:
    return sum(h["action"] in DESTRUCTIVE for h in monitor.remediation.history)


async def run_scenario(layout: Layout, say: Callable[[str], None], *,
                       serve: int | None = None,
                       ready: Callable[[DemoResult], None] = lambda _r: None) -> DemoResult:
    """Run the scenario; ``ready`` gets the result as soon as it is known. With ``serve``
    (a port, 0 for any) the lab and the service keep running afterwards with the API on
    127.0.0.1, until SIGINT/SIGTERM, so anyone can explore the result."""
    with tempfile.TemporaryDirectory(prefix="poolwarden-demo-") as tmp, Lab(layout) as lab, \
            SmtpSink() as smtp, WebhookSink() as hook:
        master = lab.master_name
        result = DemoResult(pool=layout.pool.name, host=master)
        cfg = demo_config(lab, layout, f"{tmp}/poolwarden.db", smtp, hook)
        store = Store.open(cfg.store.url)
        monitor = Monitor(cfg, store, executor=ExecutorSettings(poll_interval=0.05))
        creds = (layout.credentials.user, layout.credentials.password)
        with XenAPIDriver(lab.urls[master], *creds) as driver:
            result.before = driver.snapshot()
        stop = asyncio.Event()
        task = asyncio.create_task(monitor.run(stop))
        try:
            await _until(lambda: all(
                (st := monitor.engine.status(h, "snmp/agent")) is not None
                and st.state.name == "OK" for h in lab.bmc), "every BMC's first answer")
            say(f"poolwarden watches {len(lab.bmc)} BMCs and the pool over XenAPI")

            cpu = lab.bmc[master].sensor("temperature", "CPU1 Temp").reading
            hot = (cpu.crit or 90.0) + OVERHEAT_MARGIN
            say(f"fault: {master}'s CPU1 goes to {hot:.0f} °C (its iDRAC's critical "
                f"threshold is {cpu.crit:.0f} °C)")
            result.fault_at = time.time()
            lab.bmc[master].set_sensor("temperature", "CPU1 Temp", hot)
            lab.bmc[master].inject("temperature", "CPU1 Temp", "overheat")  # criticalUpper
            entry = await _until(lambda: next(
                (h for h in monitor.remediation.history if h["host"] == master), None),
                "the remediation of the overheating host")
            await monitor.remediation.drain()
            result.remediation = entry.get("report") or {}
            result.detected_at = (result.remediation.get("detected") or {}).get("since")
            say(f"remediation: {entry['summary']}")
            await _until(lambda: len(hook.received) >= 1, "the page on the webhook")

            actions = _destructive(monitor)
            psu_host = result.psu_host = _psu_host(lab, master)
            if psu_host is None:
                say("no other host's BMC reports power-supply status: PSU scenario skipped")
            else:
                say(f"fault: power supply PS1 of {psu_host} failed")
                await _until(lambda: any(
                    SYSADMINS in m.to and psu_host in m.subject and "PS1" in m.subject
                    for m in smtp.received), "the PSU warning email")
                result.psu_actions = _destructive(monitor) - actions
            await monitor.notifier.drain()
            _collect(result, monitor, smtp, hook)
            with XenAPIDriver(lab.urls[lab.master_name], *creds) as driver:
                result.after = driver.snapshot()
            result.problems = verify(result)
            if serve is None:
                ready(result)
            else:
                await _serve(result, monitor, store, serve, ready)
        finally:
            stop.set()
            await task
            store.close()
        return result


def _collect(result: DemoResult, monitor: Monitor, smtp: SmtpSink, hook: WebhookSink) -> None:
    result.history = list(monitor.remediation.history)
    result.notifications = [
        {"receiver": r.receiver, "channel": r.scheme, "severity": r.severity,
         "subject": r.subject, "status": r.status} for r in monitor.notifier.sent(200)]
    result.mails = [{"to": ", ".join(m.to), "subject": m.subject} for m in smtp.received]
    result.hooks = [{"title": h.payload.get("title"), "type": h.payload.get("type")}
                    for h in hook.received]


async def _serve(result: DemoResult, monitor: Monitor, store: Store, port: int,
                 ready: Callable[[DemoResult], None]) -> None:
    """Keep the demo's API and dashboard up (an admin token and an admin dashboard user
    ``demo`` with a random password made for it) until SIGINT/SIGTERM."""
    from poolwarden.api.app import create_app
    from poolwarden.api.auth import create_token
    from poolwarden.api.serve import bind, serve_api
    from poolwarden.api.users import create_user, generate_password

    sock = bind(f"127.0.0.1:{port}")
    try:
        token = create_token(store, "admin", "demo")
        password = generate_password()
        await asyncio.to_thread(create_user, store, "demo", "admin", password)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        result.api = {"url": url, "token": token, "ui": f"{url}/ui/",
                      "login": {"user": "demo", "password": password}}
        ready(result)
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, done.set)
        await serve_api(create_app(monitor, store), sock, done)
    finally:
        sock.close()


def verify(r: DemoResult) -> list[str]:
    """Where the pool read back through XenAPI differs from what the demo reports."""
    rep, snap = r.remediation, r.after
    if snap is None or not rep:
        return ["no remediation report"]
    problems = []
    host = snap.host(r.host)
    master = snap.host(snap.master)
    if snap.layout() != rep.get("after"):
        problems.append(f"pool layout {snap.layout()} != reported {rep.get('after')}")
    if master is None or master.name != rep.get("master_after"):
        problems.append(f"master is {master.name if master else '?'}, report says "
                        f"{rep.get('master_after')}")
    if rep.get("status") == "done":
        if host is None or host.enabled or snap.vms_on(host.ref):
            problems.append(f"{r.host} should be disabled and empty")
    elif not rep.get("feasible", True):
        before = r.before.layout() if r.before else None
        if snap.layout() != before or host is None or not host.enabled:
            problems.append("an infeasible plan changed the pool")
    else:
        problems.append(f"remediation ended {rep.get('status')}: {rep.get('error')}")
    if r.psu_host is not None and r.psu_actions:
        problems.append("the PSU warning caused an action")
    return problems


def summary(r: DemoResult) -> dict[str, Any]:
    """The ``--json`` document."""
    rep = r.remediation
    return {
        "pool": r.pool, "host": r.host, "fault_at": r.fault_at, "detected_at": r.detected_at,
        "status": rep.get("status"), "feasible": rep.get("feasible"),
        "blockers": rep.get("blockers", []),
        "steps": [{k: s.get(k) for k in ("name", "title", "status", "started", "finished")}
                  for s in rep.get("steps", [])],
        "master_before": rep.get("master_before"), "master_after": rep.get("master_after"),
        "before": rep.get("before"), "after": rep.get("after"), "todo": rep.get("todo"),
        "notifications": r.notifications, "mails": r.mails, "webhooks": r.hooks,
        "psu_host": r.psu_host, "psu_actions": r.psu_actions,
        "verified": not r.problems, "problems": r.problems,
        **({"api": r.api} if r.api else {}),
    }
