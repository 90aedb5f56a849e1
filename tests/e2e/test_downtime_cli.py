"""`poolwarden downtime …` as a user runs it, on a fresh SQLite store."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import store_cli


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'downtimes.db'}"


def pw(store_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return store_cli.run("downtime", store_url, *args)


def pw_json(store_url: str, *args: str, code: int = 0) -> Any:
    return store_cli.run_json("downtime", store_url, *args, code=code)


def test_add_list_cancel(store_url: str) -> None:
    now = pw_json(store_url, "add", "xs1", "--duration", "2h", "--comment", "BIOS update")
    assert (now["id"], now["host"], now["check"], now["state"], now["comment"]) == (
        1, "xs1", None, "active", "BIOS update")
    assert now["ends_at"] - now["starts_at"] == pytest.approx(7200)
    assert now["author"].startswith("cli:")

    # naive times are UTC; an offset is honoured
    start = (datetime.now(UTC) + timedelta(days=1)).replace(second=0, microsecond=0)
    end = start + timedelta(hours=1)
    later = pw_json(store_url, "add", "xs2", "--check", "snmp/temperature/*",
                    "--start", start.replace(tzinfo=None).isoformat(),
                    "--until", end.astimezone(timezone(timedelta(hours=2))).isoformat(),
                    "--author", "alice")
    assert (later["check"], later["state"], later["author"]) == (
        "snmp/temperature/*", "scheduled", "alice")
    assert (later["starts_at"], later["ends_at"]) == (start.timestamp(), end.timestamp())

    listed = pw_json(store_url, "list")["downtimes"]
    assert [(d["id"], d["state"]) for d in listed] == [(1, "active"), (2, "scheduled")]
    table = pw(store_url, "list")
    assert table.returncode == 0, table.stderr
    assert "snmp/temperature/*" in table.stdout
    assert "BIOS update" in table.stdout
    assert f"{start:%Y-%m-%d %H:%M} →" in table.stdout  # from, in UTC, to the minute

    cancelled = pw_json(store_url, "cancel", "1")
    assert cancelled["state"] == "cancelled"
    assert cancelled["cancelled_by"].startswith("cli:")
    again = pw(store_url, "cancel", "1")
    assert again.returncode == 1
    assert "already cancelled" in again.stderr
    assert [d["id"] for d in pw_json(store_url, "list")["downtimes"]] == [2]
    everything = pw_json(store_url, "list", "--all", "--host", "xs1")["downtimes"]
    assert [(d["id"], d["state"]) for d in everything] == [(1, "cancelled")]


def test_refusals_exit_2_with_the_reason(store_url: str) -> None:
    doc = pw_json(store_url, "add", "bad host", "--duration", "1h", code=2)
    assert doc["error"]["type"] == "UsageError"
    assert "bad host name" in doc["error"]["message"]
    doc = pw_json(store_url, "add", "xs1", "--duration", "1h", "--until", "2099-01-01",
                  code=2)
    assert "exactly one of --duration and --until" in doc["error"]["message"]
    past = pw(store_url, "add", "xs1", "--start", "2020-01-01T10:00",
              "--until", "2020-01-01T12:00")
    assert past.returncode == 2
    assert "already be over" in past.stderr
    assert pw_json(store_url, "cancel", "7", code=1)["error"]["type"] == "NotFound"
