"""Alembic environment: run with the connection ``SqlStore.migrate`` passes in
``config.attributes["connection"]`` (no alembic.ini needed)."""

from __future__ import annotations

from alembic import context

from gateway.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through gateway.store.sql.SqlStore.migrate()")
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
context.run_migrations()
