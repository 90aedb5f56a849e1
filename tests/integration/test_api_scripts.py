"""XESCRIPT over the REST API: catalog, runs, refusals, roles, the audit trail.

A real store (SQLite and PostgreSQL) and a real OpenSSH server on loopback.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from poolwarden.api.app import create_app
from poolwarden.api.auth import create_token
from poolwarden.config.models import Config, HostConfig, PoolConfig, ScriptsConfig, SshConfig
from poolwarden.scripts.audit import history
from poolwarden.store.db import Store
from sshd_server import Sshd, free_port, keygen


def config(sshd: Sshd) -> Config:
    return Config(
        pools=[PoolConfig(name="lab-pool", hosts=[
            HostConfig(name="xs1", address="127.0.0.1", ssh_port=sshd.port),
            HostConfig(name="xs-dead", address="127.0.0.1", ssh_port=free_port()),
        ])],
        scripts=ScriptsConfig(directory=sshd.scripts, timeout=20, ssh=SshConfig(
            key_file=sshd.key_file, known_hosts=sshd.known_hosts, connect_timeout=5)))


@pytest.fixture
def client(store: Store, sshd: Sshd) -> Iterator[TestClient]:
    with TestClient(create_app(None, store, config=config(sshd))) as c:
        yield c


@pytest.fixture
def h(store: Store) -> dict[str, dict[str, str]]:
    """Authorization headers per role."""
    return {role: {"Authorization": f"Bearer {create_token(store, role, f'{role}-person')}"}
            for role in ("viewer", "operator", "admin")}


def run(client: TestClient, headers: dict[str, str], host: str, script: str,
        *args: str) -> tuple[int, dict[str, object]]:
    r = client.post("/api/v1/scripts/run", headers=headers,
                    json={"host": host, "script": script, "args": list(args)})
    return r.status_code, r.json()


def test_the_catalog_lists_names_and_declared_arguments(
        client: TestClient, h: dict[str, dict[str, str]]) -> None:
    r = client.get("/api/v1/scripts", headers=h["viewer"])
    assert r.status_code == 200
    scripts = {s["name"]: s for s in r.json()}
    assert "escape" not in scripts  # the symlink out of the directory is not offered
    assert scripts["echo-args"]["args"] == [
        {"name": "A", "type": "re([a-z0-9-]{1,32})"}, {"name": "N", "type": "int[1-100]"},
        {"name": "M", "type": "enum(on|off)"}]
    assert scripts["fail"]["usage"] == "fail CODE:int[0-255]"


def test_an_operator_runs_a_script_and_the_audit_says_who(
        client: TestClient, h: dict[str, dict[str, str]]) -> None:
    code, doc = run(client, h["operator"], "xs1", "echo-args", "web-1", "7", "on")
    assert code == 200, doc
    assert (doc["ok"], doc["exit_status"], doc["stdout"]) == (True, 0, "web-1|7|on|\n")
    assert (doc["stdout_truncated"], doc["timed_out"]) == (False, False)
    code, failed = run(client, h["admin"], "xs1", "fail", "4")
    assert code == 200  # it ran: a failure is a result, not an HTTP error
    assert (failed["ok"], failed["exit_status"], failed["status"]) == (False, 4, "failed")
    runs = client.get("/api/v1/scripts/runs", headers=h["viewer"]).json()
    assert [(r["id"], r["who"], r["status"]) for r in runs] == [
        (failed["audit_id"], "api:admin-person", "failed"),
        (doc["audit_id"], "api:operator-person", "ok")]
    assert runs[1]["args"] == ["web-1", "7", "on"]
    limited = client.get("/api/v1/scripts/runs", params={"limit": 1}, headers=h["viewer"])
    assert len(limited.json()) == 1


@pytest.mark.parametrize(("host", "script", "args", "status", "fragment"), [
    ("xs1", "echo-args", ["a;reboot", "1", "on"], 422, "argument A"),
    ("xs1", "echo-args", ["$(id)", "1", "on"], 422, "argument A"),
    ("xs1", "../../bin/sh", [], 422, "invalid script name"),
    ("xs1", "escape", [], 422, "outside the scripts directory"),
    ("xs9", "fail", ["0"], 404, "no host 'xs9'"),
])
def test_refused_requests_are_answered_and_audited(
        client: TestClient, h: dict[str, dict[str, str]], host: str, script: str,
        args: list[str], status: int, fragment: str) -> None:
    code, doc = run(client, h["operator"], host, script, *args)
    assert code == status
    assert fragment in str(doc["error"])
    [row] = client.get("/api/v1/scripts/runs", headers=h["viewer"]).json()
    assert (row["status"], row["who"], row["script"], row["args"]) == (
        "refused", "api:operator-person", script, args)


def test_an_unreachable_host_is_a_bad_gateway(client: TestClient,
                                              h: dict[str, dict[str, str]]) -> None:
    code, doc = run(client, h["operator"], "xs-dead", "fail", "0")
    assert code == 502
    assert doc["error"]["type"] == "ConnectionFailed"  # type: ignore[index]
    [row] = client.get("/api/v1/scripts/runs", headers=h["viewer"]).json()
    assert row["status"] == "failed"


def test_an_untrusted_host_key_is_a_conflict_and_a_refused_key_a_bad_gateway(
        store: Store, sshd: Sshd, h: dict[str, dict[str, str]], tmp_path: Path) -> None:
    keygen(tmp_path / "stranger")
    base = config(sshd)
    assert base.scripts is not None
    for ssh, status, kind in (
            ({"known_hosts": sshd.other_known_hosts}, 409, "OperationRefused"),
            ({"key_file": tmp_path / "stranger"}, 502, "AuthenticationFailed")):
        cfg = base.model_copy(update={"scripts": base.scripts.model_copy(
            update={"ssh": base.scripts.ssh.model_copy(update=ssh)})})
        with TestClient(create_app(None, store, config=cfg)) as c:
            code, doc = run(c, h["operator"], "xs1", "fail", "0")
        assert code == status
        assert doc["error"]["type"] == kind  # type: ignore[index]
    assert [r.status for r in history(store)] == ["refused", "refused"]


def test_a_viewer_may_look_but_not_run(client: TestClient,
                                       h: dict[str, dict[str, str]]) -> None:
    code, _ = run(client, h["viewer"], "xs1", "fail", "0")
    assert code == 403
    assert client.get("/api/v1/scripts/runs", headers=h["viewer"]).json() == []


def test_without_scripts_configured_the_routes_say_so(
        store: Store, h: dict[str, dict[str, str]]) -> None:
    with TestClient(create_app(None, store, config=Config())) as c:
        r = c.get("/api/v1/scripts", headers=h["viewer"])
        assert r.status_code == 409
        assert "no scripts: section" in r.json()["error"]["message"]
        code, _ = run(c, h["operator"], "xs1", "fail", "0")
        assert code == 409
