"""Engines for SQLite and PostgreSQL, and the one place driver errors become StoreErrors.

SQLite: WAL journal, ``synchronous=FULL`` (a commit is on disk before the ACK), a 30 s busy
timeout, foreign keys on. The driver's own transaction handling is switched off and the
store emits ``BEGIN`` itself: ``BEGIN IMMEDIATE`` for write transactions, so writers are
serialised at the start of the transaction (no upgrade deadlocks) and SAVEPOINTs work.

PostgreSQL: psycopg 3, a connection pool; ``postgresql://`` URLs are normalised to psycopg.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from gateway.errors import ConflictError, StoreError, TransientConflict

P = ParamSpec("P")
T = TypeVar("T")

SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=30000",
    "PRAGMA foreign_keys=ON",
    "PRAGMA case_sensitive_like=ON",  # LIKE behaves as on PostgreSQL (uri :below)
    # ingest: every message adds rows at random places of several B-trees: a bigger page
    # cache; checkpoints run on a thread of their own (gateway.store.checkpoint), SQLite's
    # automatic one only past ~200 MB of WAL (truncated back to 64 MB after it).
    # Durability is unchanged: synchronous=FULL.
    "PRAGMA cache_size=-32768",
    "PRAGMA wal_autocheckpoint=50000",
    "PRAGMA journal_size_limit=67108864",
)
# searches read one page: parallel workers only add start-up time (tens of ms on 2 cores)
PG_OPTIONS = "-c max_parallel_workers_per_gather=0"
PG_TRANSIENT = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock not available
PG_UNIQUE = "23505"


def normalise_url(url: str) -> URL:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: str, *, pool_size: int = 8) -> Engine:
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, pool_size=pool_size, max_overflow=pool_size,
                               connect_args={"check_same_thread": False, "timeout": 30})
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() != "postgresql":
        raise StoreError("unsupported database URL scheme", scheme=parsed.drivername)
    # the URL's own libpq options (e.g. role all's hub: ``-csearch_path=hub``) join ours
    options = " ".join(filter(None, [PG_OPTIONS, parsed.query.get("options")]))  # type: ignore[list-item]
    return create_engine(parsed.difference_update_query(["options"]), pool_size=pool_size,
                         max_overflow=pool_size * 2, pool_pre_ping=True,
                         connect_args={"options": options})


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_conn.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def translate(exc: SQLAlchemyError, **context: object) -> StoreError:
    """One driver error → the gateway's hierarchy (message without values)."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    text = str(orig or exc).lower()
    kind = type(orig).__name__ if orig is not None else type(exc).__name__
    if code in PG_TRANSIENT or "database is locked" in text or "deadlock" in text:
        return TransientConflict(f"database conflict: {kind}", **context)
    if code == PG_UNIQUE or "unique constraint" in text:
        return TransientConflict(f"concurrent write: {kind}", **context)
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return StoreError(f"database connection lost: {kind}", **context)
    return StoreError(f"database error: {kind}", **context)


def translated(fn: Callable[P, T]) -> Callable[P, T]:
    """Translate SQLAlchemy/driver errors raised by ``fn`` once, at the store boundary."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except SQLAlchemyError as exc:
            raise translate(exc) from exc

    return wrapper


__all__ = ["ConflictError", "make_engine", "normalise_url", "translate", "translated"]
