"""The projector's batch write: many ``apply_version`` calls in a few statements.

Same outcome as calling ``SqlTransaction.apply_version`` for each resource in order: a
version is stored only when it is newer than what the store holds (same or older → no-op),
every newer version lands in the history, the current row and its index rows end at the
newest. Per batch: one SELECT … FOR UPDATE of the current rows per resource type (``res_id
IN``, an index search), one multi-row write per table (COPY on PostgreSQL, executemany of
plain tuples on SQLite), one DELETE per index table and resource type for the keys that had
rows. At the hub this is what lets one projector keep up with a network's edges (see
bench/bus.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql

from gateway.store import schema as s
from gateway.store.base import Resource
from gateway.store.content import content_hash, dumps, normalise_instant
from gateway.store.search.index import index_rows

if TYPE_CHECKING:
    from gateway.store.tx import SqlTransaction

Key = tuple[str, str]
CHUNK = 500  # ids per IN list

_r = s.resource.c
_CURRENT = select(_r.res_type, _r.res_id, _r.version_id).where(
    _r.res_type == bindparam("k_type"), _r.res_id.in_(bindparam("k_ids", expanding=True)))
_UPDATE_CURRENT = update(s.resource).where(
    _r.res_type == bindparam("k_type"), _r.res_id == bindparam("k_id")).values(
    version_id=bindparam("version_id"), last_updated=bindparam("last_updated"),
    deleted=bindparam("deleted"), content=bindparam("content"),
    content_hash=bindparam("content_hash"))
_DELETE_INDEX = {kind: delete(table).where(
    table.c.res_type == bindparam("k_type"), table.c.res_id.in_(bindparam("k_ids",
                                                                           expanding=True)))
    for kind, table in s.INDEX_TABLES.items()}
_PG_CURRENT = ("SELECT res_type, res_id, version_id FROM resource WHERE res_type = %s"
               " AND res_id = ANY(%s) ORDER BY res_id FOR UPDATE")
_PG_DELETE_INDEX = {kind: f"DELETE FROM {table.name} WHERE res_type = %s"  # noqa: S608
                    " AND res_id = ANY(%s)" for kind, table in s.INDEX_TABLES.items()}


_PG_TYPES = {"VARCHAR": "text", "TEXT": "text", "INTEGER": "int4", "BIGINT": "int8",
             "FLOAT": "float8", "BOOLEAN": "bool", "BYTEA": "bytea"}


def _statements(table: Table, binary: bool) -> tuple[str, str, list[str] | None]:
    """(SQLite INSERT, PostgreSQL COPY, the binary COPY's column types) of every column in
    table order; the names come from the schema, never from input."""
    names = ", ".join(f'"{c.name}"' for c in table.columns)
    marks = ", ".join("?" * len(table.columns))
    insert = f"INSERT INTO {table.name} ({names}) VALUES ({marks})"  # noqa: S608
    if not binary:
        return insert, f"COPY {table.name} ({names}) FROM STDIN", None
    types = [_PG_TYPES[c.type.compile(dialect=postgresql.dialect()).split("(")[0].split()[0]]
             for c in table.columns]
    return insert, f"COPY {table.name} ({names}) FROM STDIN (FORMAT BINARY)", types


# Binary for the resource rows (their values' types are fixed here; no hex text for the
# content); text for index rows, whose values come from resource elements as they are.
_ROW_WRITES = {table.name: _statements(table, binary=table in (s.resource, s.resource_version))
               for table in (s.resource, s.resource_version, *s.INDEX_TABLES.values())}


def apply_versions(tx: SqlTransaction, resources: Sequence[Resource]) -> int:
    """Apply ``resources`` (each with meta.versionId/lastUpdated); returns how many versions
    were new."""
    held = _current_versions(tx, {(r["resourceType"], r["id"]) for r in resources})
    had_row = set(held)
    newer: dict[Key, list[Resource]] = {}
    for resource in resources:
        key = (resource["resourceType"], resource["id"])
        version = int(resource["meta"]["versionId"])
        if version > held.get(key, 0):
            held[key] = version
            newer.setdefault(key, []).append(_normalised(resource))
    if newer:
        _write(tx, newer, had_row)
    return sum(len(v) for v in newer.values())


def _normalised(resource: Resource) -> Resource:
    meta = resource["meta"]
    return {**resource, "meta": {**meta, "lastUpdated": normalise_instant(meta["lastUpdated"])}}


def _by_type(keys: set[Key] | list[Key]) -> dict[str, list[str]]:
    """Ids per resource type, sorted: one lock order for every projector (no deadlock)."""
    out: dict[str, list[str]] = {}
    for rtype, rid in sorted(keys):
        out.setdefault(rtype, []).append(rid)
    return out


def _current_versions(tx: SqlTransaction, keys: set[Key]) -> dict[Key, int]:
    found: dict[Key, int] = {}
    for rtype, ids in _by_type(keys).items():
        if tx.store.dialect == "postgresql":
            found.update(_pg_rows(tx, _PG_CURRENT, rtype, ids))
            continue
        for start in range(0, len(ids), CHUNK):
            rows = tx.conn.execute(_CURRENT, {"k_type": rtype, "k_ids": ids[start:start + CHUNK]})
            found.update({(t, i): v for t, i, v in rows})
    return found


def _pg_rows(tx: SqlTransaction, statement: str, rtype: str,
             ids: list[str]) -> dict[Key, int]:
    """A key statement with the ids as one array (``= ANY(%s)``), planned for these values
    (not prepared: a generic plan of a key list is a scan that grows with the table)."""
    cursor = tx.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(statement, (rtype, ids), prepare=False)
    return {(t, i): v for t, i, v in cursor.fetchall()} if cursor.description else {}


def _write(tx: SqlTransaction, newer: dict[Key, list[Resource]], had_row: set[Key]) -> None:
    versions: list[tuple[Any, ...]] = []
    fresh: list[tuple[Any, ...]] = []
    changed: list[dict[str, Any]] = []
    index: dict[str, list[tuple[Any, ...]]] = {kind: [] for kind in s.INDEX_TABLES}
    for (rtype, rid), stored in newer.items():
        for resource in stored:
            meta = resource["meta"]
            versions.append((rtype, rid, int(meta["versionId"]), meta["lastUpdated"], False,
                             dumps(resource)))
        last = stored[-1]
        current = (*versions[-1], content_hash(last))
        if (rtype, rid) in had_row:
            changed.append(dict(zip(("k_type", "k_id", "version_id", "last_updated",
                                     "deleted", "content", "content_hash"), current,
                                    strict=True)))
        else:
            fresh.append(current)
        for kind, rows in index_rows(last).items():
            index[kind].extend((rtype, rid, *row.values()) for row in rows)
    write_rows(tx, s.resource_version, versions)
    write_rows(tx, s.resource, fresh)
    if changed:
        tx.conn.execute(_UPDATE_CURRENT, changed)
    _replace_index(tx, [k for k in newer if k in had_row], index)


def _replace_index(tx: SqlTransaction, existing: list[Key],
                   index: dict[str, list[tuple[Any, ...]]]) -> None:
    for kind, table in s.INDEX_TABLES.items():
        for rtype, ids in _by_type(existing).items():
            if tx.store.dialect == "postgresql":
                _pg_rows(tx, _PG_DELETE_INDEX[kind], rtype, ids)
                continue
            for start in range(0, len(ids), CHUNK):
                tx.conn.execute(_DELETE_INDEX[kind],
                                {"k_type": rtype, "k_ids": ids[start:start + CHUNK]})
        write_rows(tx, table, index[kind])


def write_rows(tx: SqlTransaction, table: Table, rows: list[tuple[Any, ...]]) -> None:
    """Rows holding every column of ``table`` in table order: COPY on PostgreSQL, one
    executemany on SQLite."""
    if not rows:
        return
    insert, copy_in, types = _ROW_WRITES[table.name]
    if tx.store.dialect != "postgresql":
        tx.conn.exec_driver_sql(insert, rows)
        return
    cursor = tx.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(copy_in) as copy:
        if types is not None:
            copy.set_types(types)
        for row in rows:
            copy.write_row(row)
