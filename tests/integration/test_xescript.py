"""XESCRIPT against a real OpenSSH server on loopback (started per test module).

The server has its own throwaway host key and accepts one throwaway client key for root;
the client trusts the host key through a known_hosts file, as in production.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from poolwarden.errors import AuthenticationFailed, OperationRefused, UsageError
from poolwarden.scripts.audit import run_audited
from poolwarden.scripts.catalog import ScriptCatalog
from poolwarden.scripts.runner import ScriptResult
from poolwarden.store.db import Store
from poolwarden.store.models import ScriptRun
from sshd_server import Sshd, keygen


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'audit.db'}")
    yield s
    s.close()


def _run(db: Store, sshd: Sshd, script: str, args: list[str], *, timeout: float = 20,
         max_output: int = 65536, known_hosts: Path | None = None) -> ScriptResult:
    result, _ = asyncio.run(run_audited(
        db, ScriptCatalog(sshd.scripts), who="test", host="xs1", address="127.0.0.1",
        port=sshd.port, script=script, args=args, user="root", key_file=sshd.key_file,
        known_hosts=known_hosts or sshd.known_hosts, timeout=timeout,
        max_output=max_output))
    return result


def _rows(db: Store) -> list[ScriptRun]:
    with db.session() as s:
        return list(s.scalars(select(ScriptRun).order_by(ScriptRun.id)))


def test_echo_args_runs(db: Store, sshd: Sshd) -> None:
    result = _run(db, sshd, "echo-args", ["web-1", "7", "on"])
    assert result.ok
    assert result.exit_status == 0
    assert result.stdout == "web-1|7|on|\n"
    assert result.stderr == "to-stderr\n"
    [row] = _rows(db)
    assert (row.status, row.exit_status, row.args, row.who) == ("ok", 0, ["web-1", "7", "on"],
                                                                 "test")
    assert "web-1|7|on|" in row.output


def test_failing_exit_status(db: Store, sshd: Sshd) -> None:
    result = _run(db, sshd, "fail", ["3"])
    assert not result.ok
    assert result.exit_status == 3
    assert result.stdout == "failing\n"
    assert _rows(db)[0].status == "failed"


def test_timeout(db: Store, sshd: Sshd) -> None:
    t0 = time.monotonic()
    result = _run(db, sshd, "sleepy", ["30"], timeout=1)
    assert result.timed_out
    assert not result.ok
    assert result.status == "timeout"
    assert time.monotonic() - t0 < 10
    assert _rows(db)[0].status == "timeout"


def test_output_truncated(db: Store, sshd: Sshd) -> None:
    result = _run(db, sshd, "noisy", ["100000"], max_output=1000)
    assert result.ok
    assert result.stdout_truncated
    assert not result.stderr_truncated
    assert result.stdout == "x" * 1000


def test_free_pattern_still_quoted(db: Store, sshd: Sshd) -> None:
    """A permissive pattern lets metacharacters through; quoting keeps them inert."""
    value = "a; touch /tmp/pwned-xescript $(id) `id` 'q' \"d\" | &"
    result = _run(db, sshd, "free", [value])
    assert result.stdout == value + "\n"
    assert not Path("/tmp/pwned-xescript").exists()


@pytest.mark.parametrize(("script", "args", "fragment"), [
    ("echo-args", ["a;reboot", "1", "on"], "argument A"),
    ("echo-args", ["$(reboot)", "1", "on"], "argument A"),
    ("echo-args", ["`reboot`", "1", "on"], "argument A"),
    ("echo-args", ["a\nreboot", "1", "on"], "control characters"),
    ("echo-args", ["a", "1;reboot", "on"], "argument N"),
    ("echo-args", ["a", "0", "on"], "outside"),
    ("echo-args", ["a", "1", "maybe"], "argument M"),
    ("echo-args", ["a" * 300, "1", "on"], "too long"),
    ("echo-args", ["a", "1"], "takes 3 argument"),
    ("echo-args", ["a", "1", "on", "extra"], "takes 3 argument"),
    ("uuid", ["not-a-uuid"], "argument HOST_UUID"),
    ("../x", [], "invalid script name"),
    ("/etc/passwd", [], "invalid script name"),
    ("nope", [], "unknown script"),
    ("escape", [], "outside the scripts directory"),
])
def test_hostile_inputs_refused_and_audited(db: Store, sshd: Sshd, script: str,
                                            args: list[str], fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        _run(db, sshd, script, args)
    [row] = _rows(db)
    assert row.status == "refused"
    assert fragment in row.error
    assert row.script == script
    assert row.args == [a[:512] for a in args]


def test_wrong_host_key_refused(db: Store, sshd: Sshd) -> None:
    with pytest.raises(OperationRefused, match="host key not trusted"):
        _run(db, sshd, "fail", ["0"], known_hosts=sshd.other_known_hosts)
    assert _rows(db)[0].status == "refused"


def test_wrong_client_key_refused(db: Store, sshd: Sshd, tmp_path: Path) -> None:
    keygen(tmp_path / "stranger")
    with pytest.raises(AuthenticationFailed):
        asyncio.run(run_audited(
            db, ScriptCatalog(sshd.scripts), who="t", host="xs1", address="127.0.0.1",
            port=sshd.port, script="fail", args=["0"], user="root",
            key_file=tmp_path / "stranger", known_hosts=sshd.known_hosts, timeout=10))
    assert _rows(db)[0].status == "refused"


def _cli(sshd: Sshd, tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "poolwarden", "xescript", *argv, "--address", "127.0.0.1",
           "--port", str(sshd.port), "--scripts-dir", str(sshd.scripts),
           "--key-file", str(sshd.key_file), "--known-hosts", str(sshd.known_hosts),
           "--timeout", "20", "--store", f"sqlite:///{tmp_path / 'cli.db'}", "--json"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def test_cli_json(sshd: Sshd, tmp_path: Path) -> None:
    ok = _cli(sshd, tmp_path, "xs1", "echo-args", "web-1", "7", "off")
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["stdout"] == "web-1|7|off|\n"
    assert doc["exit_status"] == 0
    assert doc["audit_id"]
    failed = _cli(sshd, tmp_path, "xs1", "fail", "4")
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["exit_status"] == 4
    refused = _cli(sshd, tmp_path, "xs1", "echo-args", "a;b", "1", "on")
    assert refused.returncode == 2
    assert "argument A" in json.loads(refused.stdout)["error"]["message"]
    store = Store.open(f"sqlite:///{tmp_path / 'cli.db'}")
    try:
        assert [r.status for r in _rows(store)] == ["ok", "failed", "refused"]
    finally:
        store.close()
