"""Role ``all`` keeps two stores, the edge's and the hub's; a data directory from before kept
one database holding everything. ``convert_single_database`` turns such a database into
the pair, without loss, at the first start of ``gateway serve --role all``:

1. the old database *becomes the hub* (it already holds the history, the search index,
   the audit trail and the export jobs): SQLite renames ``gateway.db`` to
   ``gateway-hub.db`` (after a full WAL checkpoint); PostgreSQL moves its tables into the
   schema ``hub`` of the same database (``ALTER TABLE … SET SCHEMA``: no rows copied);
2. a new, lean edge store is created where the old one was and filled with what the edge
   needs: the current version of every resource (so that the next message continues each
   resource's version numbers: the hub ignores a version it already holds), the inbox
   (dedupe, replay, ``/admin/messages``, with its ids) and the pseudonym links;
3. the inbox and the pseudonym links are then deleted from the hub: raw messages and
   identity stay on the edge side, as in production.

Crash-safe: step 1 is one transaction (PostgreSQL) or one rename (SQLite), and it leaves a
marker (``store_setting`` ``split``) in the hub that step 3 removes in the transaction that
fills the edge; a start that finds the marker fills the edge again (the copy ignores rows
already there).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Table, create_engine, inspect, text
from sqlalchemy.engine import make_url

from gateway.errors import ConfigError, StoreError
from gateway.store import profile
from gateway.store import schema as s
from gateway.store.engine import make_engine, normalise_url

log = logging.getLogger(__name__)
MARKER = "split"  # store_setting in the hub while the edge is not yet filled
EDGE_TABLES = (s.resource, s.inbox, s.pseudonym_link)  # copied to the new edge store
MOVED_OUT = (s.inbox, s.pseudonym_link)  # then deleted from the hub


@dataclass(frozen=True)
class Converted:
    resources: int
    messages: int
    links: int


def hub_schema(url: str) -> str | None:
    """The schema a PostgreSQL URL's ``options=-csearch_path=…`` names, else None."""
    options = str(make_url(url).query.get("options") or "")
    for part in options.replace("-c ", "-c").split():
        if part.startswith("-csearch_path="):
            return part.removeprefix("-csearch_path=").split(",")[0].strip('"') or None
    return None


def prepare_hub(hub_url: str) -> None:
    """PostgreSQL: create the hub's schema if its URL names one (role all's default)."""
    schema = hub_schema(hub_url)
    if schema is None or normalise_url(hub_url).get_backend_name() != "postgresql":
        return
    engine = make_engine(_without_options(hub_url), pool_size=1)
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    finally:
        engine.dispose()


def convert_single_database(edge_url: str, hub_url: str) -> Converted | None:
    """If ``edge_url`` holds a single ``all`` database (or a conversion was interrupted),
    make it the hub at ``hub_url`` and fill a new edge store; None when there is nothing
    to convert. ``hub_url`` must be ``config.hub_beside(edge_url)``."""
    sqlite = normalise_url(edge_url).get_backend_name() == "sqlite"
    state = _sqlite_state(edge_url, hub_url) if sqlite else _pg_state(edge_url, hub_url)
    if state is None:
        return None
    log.warning("role all: the data directory holds one database for edge and hub; "
                "converting it (the old database becomes the hub store)")
    if state == "move":
        (_sqlite_move if sqlite else _pg_move)(edge_url, hub_url)
    return _fill(edge_url, hub_url)


def refuse_unconverted(edge_url: str, hub_url: str) -> None:
    """Role all with ``--hub-database-url``: nothing is converted. Refuse to start when the
    edge's place holds an old single database with resources and the named hub holds none:
    opened as an edge it would drop its search index, and the API would be empty."""
    sqlite = normalise_url(edge_url).get_backend_name() == "sqlite"
    if sqlite and not _sqlite_path(edge_url).is_file():
        return
    if not _with(edge_url, lambda c: _is_single(c) and _has_resources(c)):
        return
    hub_sqlite = normalise_url(hub_url).get_backend_name() == "sqlite"
    if (not hub_sqlite or _sqlite_path(hub_url).is_file()) and _with(hub_url, _has_resources):
        return
    raise ConfigError(
        "the database of --database-url holds everything of an older role all (history, "
        "search index) and the hub store of --hub-database-url holds none of it: start once "
        "without --hub-database-url (the old database becomes the hub store beside it), "
        "or load the hub first (gateway serve --role hub on that database)")


# -- what is there ----------------------------------------------------------------------------

def _has_resources(conn: Connection) -> bool:
    if "resource" not in set(inspect(conn).get_table_names()):
        return False
    return conn.execute(s.resource.select().limit(1)).first() is not None


def _is_single(conn: Connection) -> bool:
    """A gateway database that is not an edge's (a hub-profile one, or older)."""
    tables = set(inspect(conn).get_table_names())
    if "resource" not in tables:
        return False
    return "store_setting" not in tables or profile.recorded(conn) != profile.EDGE


def _marked(conn: Connection) -> bool:
    if "store_setting" not in set(inspect(conn).get_table_names()):
        return False
    c = s.store_setting.c
    found = conn.execute(s.store_setting.select().where(c.name == MARKER)).first()
    return found is not None


def _sqlite_path(url: str) -> Path:
    return Path(make_url(url).database or "")


def _sqlite_state(edge_url: str, hub_url: str) -> str | None:
    edge, hub = _sqlite_path(edge_url), _sqlite_path(hub_url)
    if hub.is_file():
        return "fill" if _with(hub_url, _marked) else None
    if edge.is_file() and _with(edge_url, _is_single):
        return "move"
    return None


def _pg_state(edge_url: str, hub_url: str) -> str | None:
    schema = hub_schema(hub_url)
    if schema is None:
        return None
    def hub_has_tables(conn: Connection) -> bool:
        return "resource" in inspect(conn).get_table_names(schema=schema)
    if _with(edge_url, hub_has_tables):
        return "fill" if _with(hub_url, _marked) else None
    return "move" if _with(edge_url, _is_single) else None


def _with(url: str, read: Callable[[Connection], bool]) -> bool:
    engine = create_engine(normalise_url(_without_options(url)),
                           connect_args=_connect_args(url))
    try:
        with engine.connect() as conn:
            return read(conn)
    finally:
        engine.dispose()


def _connect_args(url: str) -> dict[str, object]:
    schema = hub_schema(url)
    return {"options": f"-csearch_path={schema}"} if schema else {}


def _without_options(url: str) -> str:
    return make_url(url).difference_update_query(["options"]).render_as_string(
        hide_password=False)


# -- 1. the old database becomes the hub ---------------------------------------------------------

def _set_marker(conn: Connection, table: str = "store_setting") -> None:
    conn.execute(text(f"DELETE FROM {table} WHERE name = :n"), {"n": MARKER})  # noqa: S608
    conn.execute(text(f"INSERT INTO {table} (name, value) VALUES (:n, 'edge')"),  # noqa: S608
                 {"n": MARKER})


def _sqlite_move(edge_url: str, hub_url: str) -> None:
    edge, hub = _sqlite_path(edge_url), _sqlite_path(hub_url)
    conn = sqlite3.connect(edge, isolation_level=None)
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS store_setting "
                     "(name VARCHAR(64) PRIMARY KEY, value VARCHAR(256) NOT NULL)")
        conn.execute("DELETE FROM store_setting WHERE name = ?", (MARKER,))
        conn.execute("INSERT INTO store_setting (name, value) VALUES (?, 'edge')", (MARKER,))
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.close()
    wal = edge.with_name(edge.name + "-wal")
    if busy or (wal.exists() and wal.stat().st_size > 0):
        raise StoreError("the database is in use by another process: stop it first",
                         database=str(edge))
    for suffix in ("-wal", "-shm"):
        edge.with_name(edge.name + suffix).unlink(missing_ok=True)
    os.rename(edge, hub)  # same directory: atomic
    log.warning("role all: %s is now the hub store %s", edge.name, hub.name)


def _pg_move(edge_url: str, hub_url: str) -> None:
    schema = hub_schema(hub_url)
    engine = make_engine(edge_url, pool_size=1)
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('gateway-migrate'))"))
            present = set(inspect(conn).get_table_names())
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            for name in sorted(present & {*s.metadata.tables, "alembic_version"}):
                conn.execute(text(f'ALTER TABLE "{name}" SET SCHEMA "{schema}"'))
            # the trigger functions of those tables (audit trail, subscriptions) go along
            for (name,) in conn.execute(text(
                    "SELECT DISTINCT p.proname FROM pg_trigger t"
                    " JOIN pg_proc p ON p.oid = t.tgfoid"
                    " JOIN pg_namespace n ON n.oid = p.pronamespace"
                    " JOIN pg_class c ON c.oid = t.tgrelid"
                    " WHERE n.nspname = 'public' AND NOT t.tgisinternal"
                    " AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = :s)"),
                    {"s": schema}):
                conn.execute(text(f'ALTER FUNCTION "{name}"() SET SCHEMA "{schema}"'))
            _set_marker(conn, f'"{schema}".store_setting')
    finally:
        engine.dispose()
    log.warning("role all: the tables of the database are now the hub store (schema %s)",
                schema)


# -- 2. and 3. a new edge store, filled from the hub ----------------------------------------------

def _fill(edge_url: str, hub_url: str) -> Converted:
    from gateway.store.sql import SqlStore

    edge = SqlStore(edge_url, edge=True)
    try:
        edge.migrate()
        with edge.engine.connect() as conn:
            hub = _attach_hub(conn, edge.dialect, hub_url)  # SQLite: outside a transaction
            if edge.dialect == "sqlite":
                conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                counts = [_copy(conn, edge.dialect, hub, table) for table in EDGE_TABLES]
                if edge.dialect == "postgresql":
                    conn.execute(text("SELECT setval(pg_get_serial_sequence('inbox', 'id'), "
                                      "GREATEST((SELECT max(id) FROM inbox), 1))"))
                for table in MOVED_OUT:
                    conn.execute(text(f"DELETE FROM {hub}.{table.name}"))  # noqa: S608
                conn.execute(text(f"DELETE FROM {hub}.store_setting "  # noqa: S608
                                  "WHERE name = :n"), {"n": MARKER})
            if edge.dialect == "sqlite":
                conn.connection.driver_connection.execute(  # type: ignore[union-attr]
                    "DETACH DATABASE hub")
    finally:
        edge.close()
    done = Converted(*counts)
    log.warning("role all: edge store filled: %d resources, %d messages, %d pseudonym links",
                done.resources, done.messages, done.links)
    return done


def _attach_hub(conn: Connection, dialect: str, hub_url: str) -> str:
    if dialect == "sqlite":
        # on the driver's connection: SQLAlchemy would BEGIN first, and SQLite attaches
        # only outside a transaction
        conn.connection.driver_connection.execute(  # type: ignore[union-attr]
            "ATTACH DATABASE ? AS hub", (str(_sqlite_path(hub_url)),))
        return "hub"
    return f'"{hub_schema(hub_url)}"'


def _copy(conn: Connection, dialect: str, hub: str, table: Table) -> int:
    name = table.name
    columns = ", ".join(c.name for c in table.columns)
    verb, tail = (("INSERT OR IGNORE", "") if dialect == "sqlite"
                  else ("INSERT", " ON CONFLICT DO NOTHING"))
    done = conn.execute(text(
        f"{verb} INTO {name} ({columns}) SELECT {columns} FROM {hub}.{name}{tail}"))  # noqa: S608
    return max(done.rowcount, 0)
