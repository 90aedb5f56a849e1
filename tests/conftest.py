"""Fixtures shared by every test level.

The store runs on SQLite (the embedded default) and on the real PostgreSQL of this
machine kind (127.0.0.1:5432, trust auth): every test that takes ``store`` runs on both.
Each test session gets its own PostgreSQL database, dropped at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from nats_server import PrivateNats
from poolwarden.store.db import Store
from sshd_server import Sshd, start_sshd

PG_ADMIN = os.environ.get("POOLWARDEN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    name = f"poolwarden_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'poolwarden.db'}"
        return
    base: str = request.getfixturevalue("pg_url")
    # A fresh schema per test keeps PostgreSQL tests independent, like a fresh SQLite file.
    schema = f"t_{uuid.uuid4().hex[:10]}"
    plain = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield f"{base}?options=-csearch_path%3D{schema}"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store.open(store_url)
    yield s
    s.close()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """A real sshd on loopback (per test module) with the test scripts directory."""
    with start_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[PrivateNats]:
    """A nats-server of the test's own (see tests/nats_server.py), started."""
    server = PrivateNats(tmp_path / "jetstream")
    server.start()
    yield server
    server.stop()
