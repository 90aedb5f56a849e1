"""Opening the store: engine, SQLite tuning, schema migration.

SQLite (the embedded default) runs in WAL mode so that readers (the CLI, the API) never
block the writer, with a busy timeout because two poolwarden processes may share a file.
PostgreSQL is the same code with another URL.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from poolwarden.errors import ConfigError, ConnectionFailed

MIGRATIONS = Path(__file__).parent / "migrations"
_PG_LOCK_KEY = 0x706F6F6C  # "pool": the advisory lock id that serialises migrations


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, fast
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


class Store:
    """A database poolwarden writes to; ``Store.open(url)`` migrates it to the latest schema."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Store:
        if url.startswith("sqlite:///"):
            path = url.removeprefix("sqlite:///")
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            engine = create_engine(url, pool_pre_ping=True)
        except (SQLAlchemyError, ValueError) as exc:  # bad URL, unknown dialect
            raise ConfigError(f"invalid store URL: {exc}", field="store.url") from exc
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        store = cls(engine)
        if migrate:
            store.migrate()
        return store

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (idempotent).

        Serialised across processes — a service and a CLI opening a fresh store at the same
        moment must not both create the tables: a file lock beside an SQLite file, an
        advisory lock (held until the migration's transaction ends) on PostgreSQL.
        """
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self._migration_lock(), self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except OperationalError as exc:
            raise ConnectionFailed(f"cannot open the store: {exc.orig}") from exc

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        db = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        if not db or db == ":memory:":
            yield
            return
        with open(f"{db}.migrate-lock", "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back on error."""
        with self._sessions.begin() as s:
            yield s

    def close(self) -> None:
        self.engine.dispose()


def now() -> float:
    """Wall-clock time for records (epoch seconds, UTC)."""
    return time.time()
