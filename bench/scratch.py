"""Scratch PostgreSQL databases for the benchmarks: created fresh, dropped after.

The server is the machine's (``GATEWAY_BENCH_PG``, default the local ``test`` database as
the administrative connection)."""

from __future__ import annotations

import os
import uuid

import psycopg
from sqlalchemy.engine import make_url

PG_ADMIN = os.environ.get("GATEWAY_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


def pg_database(prefix: str = "bench") -> tuple[str, str]:
    """A new empty database: (its SQLAlchemy URL, its name)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(PG_ADMIN).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False), name


def drop_pg(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
