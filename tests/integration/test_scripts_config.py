"""XESCRIPT from poolwarden.yaml: ``scripts:``, the host's address and port, the CLI's
``--config``, and a timed-out script's processes really dying on the host.

Against a real OpenSSH server on loopback (its own, with a few extra scripts).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from poolwarden.config.models import (
    Config,
    HostConfig,
    PoolConfig,
    ScriptsConfig,
    SshConfig,
    load_config,
)
from poolwarden.errors import ConfigError, ConnectionFailed, NotFound, OperationRefused
from poolwarden.operate.ops import Operations
from poolwarden.scripts.runner import KILL_AFTER, REMOTE_GRACE, remote_command
from poolwarden.scripts.service import ConfiguredScripts
from poolwarden.store.db import Store
from poolwarden.store.models import ScriptRun
from sshd_server import SCRIPTS, Sshd, alive, free_port, start_sshd, wait_dead

#: write the shell's PID and a child's PID, then wait on the child (a "stuck" job)
PID_SLEEP = ("#!/bin/sh\n# poolwarden-args: DIR:re(/[A-Za-z0-9_/.-]{1,200})\n"
             "echo $$ > \"$1/sh.pid\"\nsleep 60 &\necho $! > \"$1/child.pid\"\nwait\n")
#: the same, deaf to TERM (and so are its children: an ignored signal is inherited)
DEAF = PID_SLEEP.replace("echo $$", "trap '' TERM\necho $$")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    scripts = {**SCRIPTS, "pid-sleep": PID_SLEEP, "deaf": DEAF}
    with start_sshd(tmp_path_factory.mktemp("sshd"), scripts) as server:
        yield server


def config(sshd: Sshd, **scripts: Any) -> Config:
    """xs1 at 127.0.0.1:<sshd>; "127.0.0.1" by its name on scripts.ssh.port; xs-dead on a
    closed port."""
    return Config(
        pools=[PoolConfig(name="lab-pool", hosts=[
            HostConfig(name="xs1", address="127.0.0.1", ssh_port=sshd.port),
            HostConfig(name="127.0.0.1"),
            HostConfig(name="xs-dead", address="127.0.0.1", ssh_port=free_port()),
        ])],
        scripts=ScriptsConfig(directory=sshd.scripts, ssh=SshConfig(
            key_file=sshd.key_file, known_hosts=sshd.known_hosts, port=sshd.port,
            connect_timeout=5), **scripts))


def rows(store: Store) -> list[ScriptRun]:
    with store.session() as s:
        return list(s.scalars(select(ScriptRun).order_by(ScriptRun.id)))


def test_run_configured_reaches_the_host_by_its_configured_address(
        sshd: Sshd, store: Store) -> None:
    ops = Operations(config(sshd), store)
    result, run_id = asyncio.run(ops.run_script("xs1", "echo-args", ["web-1", "7", "on"],
                                                who="api:alice"))
    assert result.ok
    assert result.stdout == "web-1|7|on|\n"
    # a host without address is reached by its name, on scripts.ssh.port
    by_name, _ = asyncio.run(ops.run_script("127.0.0.1", "fail", ["3"], who="api:alice"))
    assert by_name.exit_status == 3
    first, second = rows(store)
    assert first.id == run_id
    assert (first.who, first.host, first.status, first.args) == (
        "api:alice", "xs1", "ok", ["web-1", "7", "on"])
    assert (second.host, second.status, second.exit_status) == ("127.0.0.1", "failed", 3)


def test_unknown_host_and_no_scripts_section_are_refused_and_audited(
        sshd: Sshd, store: Store) -> None:
    ops = Operations(config(sshd), store)
    with pytest.raises(NotFound, match="no host 'xs9'"):
        asyncio.run(ops.run_script("xs9", "echo-args", ["a", "1", "on"], who="api:bob"))
    off = Operations(config(sshd).model_copy(update={"scripts": None}), store)
    with pytest.raises(OperationRefused, match="no scripts: section"):
        asyncio.run(off.run_script("xs1", "fail", ["0"], who="api:bob"))
    assert [(r.host, r.script, r.status, r.who) for r in rows(store)] == [
        ("xs9", "echo-args", "refused", "api:bob"), ("xs1", "fail", "refused", "api:bob")]
    assert "no host 'xs9'" in rows(store)[0].error


def test_a_missing_scripts_directory_is_a_configuration_error(
        sshd: Sshd, tmp_path: Path) -> None:
    db = Store.open(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        cfg = config(sshd)
        assert cfg.scripts is not None
        broken = cfg.model_copy(update={"scripts": cfg.scripts.model_copy(
            update={"directory": tmp_path / "nowhere"})})
        with pytest.raises(ConfigError, match=r"scripts\.directory"):
            asyncio.run(ConfiguredScripts(broken, db).run("xs1", "fail", ["0"], "t"))
        assert [r.status for r in rows(db)] == ["refused"]
    finally:
        db.close()


def test_unreachable_host_fails_and_is_audited(sshd: Sshd, tmp_path: Path) -> None:
    db = Store.open(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        with pytest.raises(ConnectionFailed):
            asyncio.run(ConfiguredScripts(config(sshd), db).run("xs-dead", "fail", ["0"], "t"))
        [row] = rows(db)
        assert (row.host, row.status) == ("xs-dead", "failed")
    finally:
        db.close()


# --- the CLI with --config -----------------------------------------------------------------

def write_config(sshd: Sshd, tmp_path: Path) -> Path:
    path = tmp_path / "poolwarden.yaml"
    path.write_text(f"""\
store: {{url: "sqlite:///{tmp_path / 'pw.db'}"}}
pools:
  - name: lab-pool
    hosts:
      - {{name: xs1, address: 127.0.0.1, ssh_port: {sshd.port}}}
scripts:
  directory: {sshd.scripts}
  timeout: 20s
  ssh: {{key_file: {sshd.key_file}, known_hosts: {sshd.known_hosts}}}
""")
    load_config(path)  # the file itself is valid
    return path


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "poolwarden", "xescript", *argv, "--json"],
                          capture_output=True, text=True, timeout=60, check=False)


def test_cli_takes_everything_from_the_config(sshd: Sshd, tmp_path: Path) -> None:
    cfg = str(write_config(sshd, tmp_path))
    ok = cli("xs1", "echo-args", "web-1", "7", "off", "--config", cfg)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["stdout"] == "web-1|7|off|\n"
    unknown = cli("xs9", "fail", "0", "--config", cfg)
    assert unknown.returncode == 1
    assert "no host 'xs9'" in json.loads(unknown.stdout)["error"]["message"]
    refused = cli("xs1", "echo-args", "a;b", "1", "on", "--config", cfg)
    assert refused.returncode == 2
    # flags override the file: the timeout, and an address for a host it does not name
    slow = cli("xs1", "sleepy", "30", "--config", cfg, "--timeout", "1")
    assert slow.returncode == 1
    assert json.loads(slow.stdout)["timed_out"] is True
    other = cli("elsewhere", "fail", "0", "--config", cfg, "--address", "127.0.0.1",
                "--port", str(sshd.port))
    assert other.returncode == 0, other.stdout
    db = Store.open(f"sqlite:///{tmp_path / 'pw.db'}")  # the config's store
    try:
        assert [(r.host, r.status) for r in rows(db)] == [
            ("xs1", "ok"), ("xs9", "refused"), ("xs1", "refused"), ("xs1", "timeout"),
            ("elsewhere", "ok")]
        assert all(r.who.startswith("cli:") for r in rows(db))
    finally:
        db.close()


def test_cli_without_config_needs_its_flags(tmp_path: Path) -> None:
    r = cli("xs1", "fail", "0", "--address", "127.0.0.1", "--store",
            f"sqlite:///{tmp_path / 'x.db'}")
    assert r.returncode == 2
    assert "--scripts-dir, --key-file, --known-hosts required" in r.stdout
    assert cli("xs1", "fail", "0").returncode == 2  # no --address, no --config


# --- a timed-out script really dies on the host ----------------------------------------------

def pids(directory: Path) -> list[int]:
    return [int((directory / f"{name}.pid").read_text()) for name in ("sh", "child")]


@pytest.mark.parametrize(("script", "within"), [
    ("pid-sleep", REMOTE_GRACE + 4.0),  # TERM to the whole process group
    ("deaf", REMOTE_GRACE + KILL_AFTER + 4.0),  # TERM ignored: KILL after KILL_AFTER
])
def test_a_timed_out_script_and_its_children_are_killed_on_the_host(
        sshd: Sshd, tmp_path: Path, script: str, within: float) -> None:
    work = tmp_path / "run"
    work.mkdir()
    db = Store.open(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        runner = ConfiguredScripts(config(sshd, timeout=1.0), db)
        result, _ = asyncio.run(runner.run("xs1", script, [str(work)], "test"))
    finally:
        db.close()
    assert result.timed_out
    assert result.exit_status is None
    found = pids(work)
    try:
        wait_dead(found, within)
    finally:
        for pid in found:  # never leave a stray sleep behind a failed assertion
            if alive(pid):
                os.kill(pid, 9)


def test_the_remote_command_carries_its_own_deadline() -> None:
    assert remote_command(("a b", "c'd"), timeout=1.5) == (
        f"timeout -s TERM -k {KILL_AFTER} {2 + REMOTE_GRACE} /bin/sh -s -- 'a b' 'c'\"'\"'d'")
    assert remote_command(("x",)) == "/bin/sh -s -- x"
