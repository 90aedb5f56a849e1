"""Fixtures of the distributed tests (see dist_harness.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from dist_harness import LAYOUT, PG_ADMIN, Site, delete_streams

from poolwarden.lab import Lab, Layout
from poolwarden.notify.sinks import SmtpSink


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    name = f"pw_dist_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    prefix = "t" + uuid.uuid4().hex[:10]
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    layout = Layout.model_validate(LAYOUT)
    with Lab(layout) as lab, SmtpSink() as smtp:
        s = Site(tmp_path, f"{base}/{name}", prefix, lab, smtp)
        s.store().close()  # the schema exists before any process or query
        try:
            yield s
        finally:
            s.stop_all()
            asyncio.run(delete_streams(s.nats_url, prefix))
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
