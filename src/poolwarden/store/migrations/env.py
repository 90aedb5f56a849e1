"""Alembic environment: run with the connection handed over by ``Store.migrate``."""

from __future__ import annotations

from alembic import context

from poolwarden.store.models import Base

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
)
with context.begin_transaction():
    context.run_migrations()
