"""The bulk load path (imports, benchmarks): many resources in one transaction.

New resources are written with one multi-row INSERT per table and chunk; resources that
already exist go through the ordinary ``put`` (versioning, no-op on identical content).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Table, delete, insert, select, tuple_

from gateway.store import schema as s
from gateway.store.base import Resource
from gateway.store.cohort import COHORT_TYPES
from gateway.store.content import content_hash, dumps, loads, now_instant, with_meta
from gateway.store.search.index import index_rows
from gateway.store.tx import SqlTransaction


def bulk_put(tx: SqlTransaction, resources: Sequence[Resource], *, outbox: bool,
             chunk: int) -> int:
    """Store ``resources``; returns how many were new."""
    created = 0
    for start in range(0, len(resources), chunk):
        part = resources[start:start + chunk]
        existing = _existing(tx, part)
        fresh = [r for r in part if (r["resourceType"], r["id"]) not in existing]
        for resource in part:
            if (resource["resourceType"], resource["id"]) in existing:
                tx.put_resource(resource, outbox=outbox)
        _insert_new(tx, _dedupe(fresh), outbox=outbox)
        created += len(_dedupe(fresh))
    return created


def _existing(tx: SqlTransaction, part: Sequence[Resource]) -> set[tuple[str, str]]:
    r = s.resource.c
    by_type: dict[str, list[str]] = {}
    for resource in part:
        by_type.setdefault(resource["resourceType"], []).append(resource["id"])
    found: set[tuple[str, str]] = set()
    for rtype, ids in by_type.items():
        rows = tx.conn.execute(select(r.res_id).where(r.res_type == rtype, r.res_id.in_(ids)))
        found.update((rtype, row[0]) for row in rows)
    return found


def _dedupe(resources: list[Resource]) -> list[Resource]:
    """The last of several resources with the same key wins (one version each)."""
    return list({(r["resourceType"], r["id"]): r for r in resources}.values())


def _insert_new(tx: SqlTransaction, resources: list[Resource], *, outbox: bool) -> None:
    if not resources:
        return
    now = now_instant()
    current: list[dict[str, Any]] = []
    versions: list[dict[str, Any]] = []
    boxes: list[dict[str, Any]] = []
    index: dict[str, list[dict[str, Any]]] = {kind: [] for kind in s.INDEX_TABLES}
    for resource in resources:
        stored = with_meta(resource, 1, now)
        data = dumps(stored)
        key = {"res_type": stored["resourceType"], "res_id": stored["id"]}
        current.append({**key, "version_id": 1, "last_updated": now, "deleted": False,
                        "content": data, "content_hash": content_hash(stored)})
        # an edge keeps no history: its outbox row carries the content; a hub's names its
        # history row
        if not tx.store.edge:
            versions.append({**key, "version_id": 1, "last_updated": now, "deleted": False,
                             "content": data})
        boxes.append({"key": f"{key['res_type']}/{key['res_id']}", **key, "version_id": 1,
                      "payload": data if tx.store.edge else None,
                      "headers": orjson.dumps({}).decode(), "created": now})
        if not tx.store.edge:
            for kind, rows in index_rows(stored).items():
                index[kind].extend({**key, **row} for row in rows)
    if not tx.store.edge:
        tx.cohort_keys.update((r["resourceType"], r["id"]) for r in resources
                              if r["resourceType"] in COHORT_TYPES)
    _insert(tx, s.resource, current)
    _insert(tx, s.resource_version, versions)
    for kind, rows in index.items():
        _insert(tx, s.INDEX_TABLES[kind], rows)
    if outbox:
        tx.conn.execute(insert(s.outbox), boxes)


def _insert(tx: SqlTransaction, table: Table, rows: list[dict[str, Any]]) -> None:
    """Many rows at once: COPY on PostgreSQL, executemany on SQLite."""
    if not rows:
        return
    if tx.store.dialect != "postgresql":
        tx.conn.execute(insert(table), rows)
        return
    columns = list(rows[0])
    cursor = tx.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    names = ", ".join(f'"{c}"' for c in columns)
    with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


def reindex(tx: SqlTransaction, resource_type: str | None, after: tuple[str, str] | None,
            limit: int) -> tuple[int, tuple[str, str] | None]:
    """Rebuild the index rows of up to ``limit`` live resources after the key ``after``
    (after a search-parameter upgrade). Returns (count, last key or None when done)."""
    r = s.resource.c
    query = select(r.res_type, r.res_id, r.content).where(r.deleted.is_(False))
    if resource_type is not None:
        query = query.where(r.res_type == resource_type)
    if after is not None:
        query = query.where(tuple_(r.res_type, r.res_id) > after)
    rows = tx.conn.execute(query.order_by(r.res_type, r.res_id).limit(limit)).all()
    index: dict[str, list[dict[str, Any]]] = {kind: [] for kind in s.INDEX_TABLES}
    by_type: dict[str, list[str]] = {}
    for rtype, rid, _ in rows:
        by_type.setdefault(rtype, []).append(rid)
    for rtype, ids in by_type.items():  # one DELETE per table and type for the batch
        for table in s.INDEX_TABLES.values():
            tx.conn.execute(delete(table).where(table.c.res_type == rtype,
                                                table.c.res_id.in_(ids)))
    for rtype, rid, content in rows:
        for kind, kind_rows in index_rows(loads(content)).items():
            index[kind].extend({"res_type": rtype, "res_id": rid, **row} for row in kind_rows)
    for kind, kind_rows in index.items():
        _insert(tx, s.INDEX_TABLES[kind], kind_rows)
    last = (rows[-1][0], rows[-1][1]) if len(rows) == limit else None
    return len(rows), last
