"""The ``script`` action item: a rule runs a vetted script on the problem's host.

The real state engine, incidents and remediation engine, and a real OpenSSH server on
loopback standing in for the pool host; no XenAPI is needed (scripts do not touch XAPI).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from poolwarden.config.models import Config, load_config
from poolwarden.errors import ConfigError
from poolwarden.evaluate.state import CheckConfig, StateEngine
from poolwarden.hypervisor.base import PoolDriver
from poolwarden.incidents.manager import IncidentManager
from poolwarden.messages import CheckResult, Message, Reading, State
from poolwarden.remediate.engine import RemediationEngine, host_pools
from poolwarden.scripts.service import configured_scripts
from poolwarden.store.db import Store
from poolwarden.store.models import ScriptRun
from sshd_server import SCRIPTS, Sshd, start_sshd

POOL = "lab-pool"
FAN = "snmp/fan/Fan 1"
NOTE = ("#!/bin/sh\n# poolwarden-args: HOST:re([a-z0-9.-]{1,64}) ADDR:re([0-9.]{7,15}) "
        "POOL:re([a-z-]{1,32}) CHECK:re(snmp/[a-z_]+/[^/]{1,64})\n"
        "printf '%s|' \"$@\"\necho\necho 'fan controller reset' >&2\n")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with start_sshd(tmp_path_factory.mktemp("sshd"), {**SCRIPTS, "note": NOTE}) as server:
        yield server


def rule(script: str, args: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": f"fan-{script}", "match": {"kind": "fan"}, "action": "script",
            "script": {"name": script, "args": args}, **extra}


NOTE_RULE = rule("note", ["{host.name}", "{host.address}", "{pool.name}", "{check}"])


def no_driver(pool: str) -> PoolDriver:
    raise AssertionError(f"a script rule must not touch XAPI (pool {pool})")


class Site:
    """Config → state engine → incidents → remediation engine, as the service wires them."""

    def __init__(self, sshd: Sshd, store: Store, rules: list[dict[str, Any]],
                 **remediation: Any) -> None:
        self.store, self.sent = store, list[Message]()
        self.config = Config.model_validate({
            "pools": [{"name": POOL, "hosts": [
                {"name": "xs1", "address": "127.0.0.1", "ssh_port": sshd.port}]}],
            "scripts": {"directory": str(sshd.scripts), "timeout": "20s",
                        "ssh": {"key_file": str(sshd.key_file),
                                "known_hosts": str(sshd.known_hosts)}},
            "rules": rules, "remediation": {"retry_after": 0.05, **remediation}})
        self.states = StateEngine(CheckConfig(max_attempts=1))
        self.incidents = IncidentManager(store)
        self.engine = RemediationEngine(
            self.config.remediation, self.config.rules, store, driver_for=no_driver,
            incidents=self.incidents, send=self._send, pools=host_pools(self.config.pools),
            scripts=configured_scripts(self.config, store))

    async def _send(self, message: Message) -> None:
        self.sent.append(message)

    def problem(self, check: str = FAN, state: State = State.CRITICAL) -> None:
        """A HARD problem on xs1, handled as the service does, until the engine is idle."""
        name = check.rsplit("/", 1)[1]
        result = CheckResult("xs1", check, state, f"{name} 0 RPM", time.time(),
                             reading=Reading("fan", name, 0.0, "RPM", status="failed"))

        async def run() -> None:
            changes = self.states.process(result, time.time())
            await asyncio.to_thread(self.incidents.handle_many, changes)
            await self.engine.handle(changes)
            await self.engine.drain()

        asyncio.run(run())

    def timeline(self, check: str = FAN) -> list[dict[str, Any]]:
        [found] = [i for i in self.incidents.list(host="xs1") if i.check == check]
        return [e.to_json() for e in self.incidents.get(found.id).events]

    def audit(self) -> list[ScriptRun]:
        with self.store.session() as s:
            return list(s.scalars(select(ScriptRun).order_by(ScriptRun.id)))


def test_a_script_rule_runs_on_the_problem_host_and_reports(sshd: Sshd, store: Store) -> None:
    site = Site(sshd, store, [NOTE_RULE])
    site.problem()
    [row] = site.audit()
    assert (row.who, row.host, row.script, row.status) == ("rule:fan-note", "xs1", "note", "ok")
    assert row.args == ["xs1", "127.0.0.1", POOL, FAN]  # placeholders filled, one arg each
    events = site.timeline()
    assert [e["kind"] for e in events] == ["opened", "remediation_detected", "script_started",
                                           "script_finished", "remediation_done"]
    assert "queued_behind" in events[1]["data"]  # it went through the per-pool queue
    finished = events[3]["data"]
    assert (finished["audit_id"], finished["exit_status"], finished["status"]) == (
        row.id, 0, "ok")
    assert finished["stdout"] == f"xs1|127.0.0.1|{POOL}|{FAN}|\n"
    [msg] = site.sent
    assert msg.key == f"script:{row.id}"
    assert msg.severity == "critical"  # the rule's default for a CRITICAL problem
    assert (msg.labels["rule"], msg.labels["script"]) == ("fan-note", "note")
    for text in ("ran `note xs1 127.0.0.1 lab-pool 'snmp/fan/Fan 1'` on xs1",
                 "exit status 0", f"xs1|127.0.0.1|{POOL}|{FAN}|", "fan controller reset"):
        assert text in msg.body, text
    [entry] = site.engine.history
    assert (entry["action"], entry["status"]) == ("script", "done")
    assert entry["report"]["audit_id"] == row.id


def test_a_failing_script_is_reported_and_not_retried(sshd: Sshd, tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'pw.db'}")
    try:
        site = Site(sshd, store, [rule("fail", ["3"], severity="warning")])
        site.problem()
        site.problem()  # the same problem again: a rule fires once per problem and state
        [row] = site.audit()
        assert (row.status, row.exit_status) == ("failed", 3)
        assert [e["kind"] for e in site.timeline()][-1] == "remediation_failed"
        [msg] = site.sent
        assert msg.severity == "critical"
        assert "FAILED: exit status 3" in msg.body
        assert "failing" in msg.body
        assert "not retried" in msg.body
    finally:
        store.close()


def test_a_placeholder_value_still_has_to_pass_the_declared_pattern(
        sshd: Sshd, tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'pw.db'}")
    try:
        site = Site(sshd, store, [rule("uuid", ["{check}"])])
        site.problem()
        [row] = site.audit()
        assert (row.status, row.args, row.who) == ("refused", [FAN], "rule:fan-uuid")
        assert "argument HOST_UUID" in row.error
        kinds = [e["kind"] for e in site.timeline()]
        assert kinds[-3:] == ["script_started", "script_finished", "remediation_failed"]
        [msg] = site.sent
        assert msg.severity == "critical"
        assert "did NOT run script uuid on xs1: the script did not run" in msg.body
    finally:
        store.close()


def test_dry_run_records_what_would_run_and_runs_nothing(sshd: Sshd, tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'pw.db'}")
    try:
        site = Site(sshd, store, [NOTE_RULE], dry_run=True)
        site.problem()
        assert site.audit() == []
        events = site.timeline()
        assert [e["kind"] for e in events][-2:] == ["script_dry_run", "remediation_done"]
        assert events[-2]["message"].startswith(
            "DRY RUN: would run `note xs1 127.0.0.1 lab-pool 'snmp/fan/Fan 1'` on xs1")
        [msg] = site.sent
        assert msg.subject == "[poolwarden] DRY RUN: would run note on xs1"
        assert site.engine.history[-1]["status"] == "dry_run"
    finally:
        store.close()


def test_rule_scripts_per_pool_and_hour_are_limited(sshd: Sshd, tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'pw.db'}")
    try:
        site = Site(sshd, store, [NOTE_RULE], max_actions_per_pool_per_hour=1)
        site.problem()
        site.problem("snmp/fan/Fan 2")
        assert [r.status for r in site.audit()] == ["ok", "refused"]
        assert "max_actions_per_pool_per_hour=1 reached" in site.audit()[1].error
        assert [e["kind"] for e in site.timeline("snmp/fan/Fan 2")][-1] == \
            "remediation_escalated"
        assert "did NOT run script note on xs1" in site.sent[-1].body
    finally:
        store.close()


def test_without_scripts_configured_the_engine_escalates(sshd: Sshd, tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'pw.db'}")
    try:
        site = Site(sshd, store, [NOTE_RULE])
        site.engine.scripts = None  # a config check refuses this; the engine copes anyway
        site.problem()
        assert site.audit() == []
        [msg] = site.sent
        assert "no scripts: section" in msg.body
        assert "run `note {host.name} {host.address} {pool.name} {check}` on xs1" in msg.body
    finally:
        store.close()


# --- at load ---------------------------------------------------------------------------------

RULES_YAML = """\
pools:
  - name: lab-pool
    hosts: [{name: xs1}]
rules:
  - {match: {kind: fan}, action: notify}
  - name: reset-fan
    match: {kind: fan}
    action: script
    script: {name: fan-reset, args: ["{host.name}", "%s"]}
"""


def test_a_script_rule_without_scripts_section_is_refused_at_load(tmp_path: Path) -> None:
    path = tmp_path / "poolwarden.yaml"
    path.write_text(RULES_YAML % "--all")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert (exc.value.file, exc.value.line, exc.value.field) == (str(path), 8, "rules.1.action")
    assert "rule reset-fan runs a script but there is no scripts: section" in str(exc.value)
    path.write_text(RULES_YAML % "{host.adress}" + "scripts: {directory: /tmp}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.field == "rules.1.script.args.1"
    assert "unknown placeholder {host.adress}" in str(exc.value)
    path.write_text(RULES_YAML % "{check}" + "scripts: {directory: /tmp}\n")
    assert load_config(path).rules[1].script is not None
