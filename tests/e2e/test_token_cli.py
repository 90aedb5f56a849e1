"""`poolwarden token …` as an administrator runs it: the secret once, usable, hashed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import text

from poolwarden.api.app import create_app
from poolwarden.store.db import Store


def pw(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "poolwarden", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=60, check=False)


def test_token_create_json_prints_a_working_secret_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    r = pw("token", "create", "--role", "operator", "--name", "ci", "--json", "--store", url,
           cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["role"] == "operator"
    assert doc["name"] == "ci"
    secret = doc["token"]
    assert secret.startswith(doc["token_id"])
    assert secret not in r.stderr

    store = Store.open(url)
    try:
        with store.session() as s:
            assert secret not in repr(s.execute(text("SELECT * FROM api_token")).all())
        with TestClient(create_app(None, store)) as c:
            headers = {"Authorization": f"Bearer {secret}"}
            assert c.get("/api/v1/incidents", headers=headers).status_code == 200
            assert c.post("/api/v1/tokens", json={"role": "viewer", "name": "x"},
                          headers=headers).status_code == 403
    finally:
        store.close()

    r = pw("token", "revoke", doc["token_id"], "--store", url, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = pw("token", "revoke", doc["token_id"], "--store", url, "--json", cwd=tmp_path)
    assert r.returncode == 1
    assert json.loads(r.stdout)["error"]["type"] == "NotFound"


def test_token_create_refuses_an_unknown_role(tmp_path: Path) -> None:
    r = pw("token", "create", "--role", "root", "--name", "x", "--json",
           "--store", f"sqlite:///{tmp_path / 'pw.db'}", cwd=tmp_path)
    assert r.returncode == 2
    assert json.loads(r.stdout)["error"]["type"] == "UsageError"


def test_token_create_plain_prints_only_the_secret_on_stdout(tmp_path: Path) -> None:
    r = pw("token", "create", "--role", "viewer", "--name", "grafana",
           "--store", f"sqlite:///{tmp_path / 'pw.db'}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith("pw_")
    assert len(r.stdout.strip().splitlines()) == 1
    assert "not shown again" in r.stderr
