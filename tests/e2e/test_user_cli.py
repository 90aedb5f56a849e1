"""`poolwarden user …` as an administrator runs it: passwords never in argv, hashed."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import text

from poolwarden.api.users import check_login
from poolwarden.store.db import Store


def pw(*args: str, cwd: Path, stdin: int | None = subprocess.DEVNULL,
       ) -> subprocess.CompletedProcess[str]:
    """Run the CLI in its own session: it has no controlling terminal, so a prompt can
    only read the given ``stdin`` (a pty stands in for a person's terminal)."""
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "poolwarden", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=60, check=False, stdin=stdin,
                          start_new_session=True)


def test_create_without_a_terminal_generates_and_prints_the_password_once(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    r = pw("user", "create", "Alice", "--role", "operator", "--json", "--store", url,
           cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert (doc["name"], doc["role"], doc["disabled"]) == ("alice", "operator", False)
    password = doc["password"]
    assert len(password) >= 24
    store = Store.open(url)
    try:
        assert check_login(store, "alice", password) is not None
        with store.session() as s:
            assert password not in repr(s.execute(text("SELECT * FROM web_user")).all())
    finally:
        store.close()
    again = pw("user", "create", "alice", "--role", "viewer", "--json", "--store", url,
               cwd=tmp_path)
    assert again.returncode == 1
    assert json.loads(again.stdout)["error"]["type"] == "OperationRefused"


def test_password_file_roles_disable_and_list(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    secret = tmp_path / "secret"
    secret.write_text("a very long password\n")
    r = pw("user", "create", "bob", "--role", "viewer", "--password-file", str(secret),
           "--store", url, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""  # nothing generated, nothing to show
    assert pw("user", "create", "x", "--role", "root", "--store", url,
              cwd=tmp_path).returncode == 2
    secret.write_text("short\n")
    assert pw("user", "passwd", "bob", "--password-file", str(secret), "--store", url,
              cwd=tmp_path).returncode == 2
    assert pw("user", "role", "bob", "admin", "--store", url, cwd=tmp_path).returncode == 0
    assert pw("user", "disable", "bob", "--store", url, cwd=tmp_path).returncode == 0
    assert pw("user", "disable", "nobody", "--store", url, cwd=tmp_path).returncode == 1
    [bob] = json.loads(pw("user", "list", "--json", "--store", url, cwd=tmp_path).stdout)
    assert (bob["name"], bob["role"], bob["disabled"]) == ("bob", "admin", True)
    table = pw("user", "list", "--store", url, cwd=tmp_path).stdout
    assert "bob" in table
    assert "disabled" in table
    assert pw("user", "enable", "bob", "--store", url, cwd=tmp_path).returncode == 0
    store = Store.open(url)
    try:
        assert check_login(store, "bob", "a very long password") is not None
    finally:
        store.close()


def prompted(args: list[str], answers: list[str], cwd: Path) -> tuple[int, str]:
    """Run the CLI with a pty as stdin, typing each answer once its prompt is shown
    (getpass flushes what was typed ahead, as a terminal should)."""
    leader, follower = pty.openpty()
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "poolwarden", *args], stdin=follower,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd,
                            start_new_session=True)
    assert proc.stderr is not None
    seen = b""
    try:
        for prompt, answer in zip(("New password: ", "Again: "), answers, strict=True):
            deadline = time.monotonic() + 30
            while prompt.encode() not in seen:
                assert time.monotonic() < deadline, seen
                ready, _, _ = select.select([proc.stderr], [], [], 1)
                if ready:
                    chunk = os.read(proc.stderr.fileno(), 4096)
                    assert chunk, seen  # the process ended before asking
                    seen += chunk
            seen = seen.replace(prompt.encode(), b"", 1)
            os.write(leader, answer.encode() + b"\n")
        _, err = proc.communicate(timeout=30)
    finally:
        os.close(leader)
        os.close(follower)
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, (seen + err).decode()


def test_on_a_terminal_the_password_is_asked_twice(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    args = ["user", "create", "carol", "--role", "viewer", "--store", url]
    code, err = prompted(args, ["first password 1", "other password 2"], tmp_path)
    assert code == 2
    assert "the two passwords differ" in err
    code, err = prompted(args, ["typed password 42", "typed password 42"], tmp_path)
    assert code == 0, err
    assert "generated" not in err
    store = Store.open(url)
    try:
        assert check_login(store, "carol", "typed password 42") is not None
    finally:
        store.close()
