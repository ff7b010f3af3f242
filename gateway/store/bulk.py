"""The bulk load path (imports, benchmarks): many resources in one transaction.

New resources are written with one multi-row INSERT per table and chunk (``insert_new``);
resources that already exist go through the ordinary ``put`` (versioning, no-op on
identical content): ``SqlStore.bulk_put`` tells the two apart with ``existing``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Table, insert, select

from gateway.store import schema as s
from gateway.store.base import Resource
from gateway.store.content import content_hash, dumps, now_instant, with_meta
from gateway.store.search.index import index_rows
from gateway.store.session import Key, Session


def existing(session: Session, part: Sequence[Resource]) -> set[Key]:
    """The keys of ``part`` that the store holds (live or deleted)."""
    r = s.resource.c
    by_type: dict[str, list[str]] = {}
    for resource in part:
        by_type.setdefault(resource["resourceType"], []).append(resource["id"])
    found: set[tuple[str, str]] = set()
    for rtype, ids in by_type.items():
        rows = session.conn.execute(select(r.res_id).where(r.res_type == rtype, r.res_id.in_(ids)))
        found.update((rtype, row[0]) for row in rows)
    return found


def dedupe(resources: list[Resource]) -> list[Resource]:
    """The last of several resources with the same key wins (one version each)."""
    return list({(r["resourceType"], r["id"]): r for r in resources}.values())


def insert_new(session: Session, resources: list[Resource], *, outbox: bool) -> None:
    """Version 1 of each of ``resources`` (none of them stored yet)."""
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
        if not session.edge:
            versions.append({**key, "version_id": 1, "last_updated": now, "deleted": False,
                             "content": data})
        boxes.append({"key": f"{key['res_type']}/{key['res_id']}", **key, "version_id": 1,
                      "payload": data if session.edge else None,
                      "headers": orjson.dumps({}).decode(), "created": now})
        if not session.edge:
            for kind, rows in index_rows(stored).items():
                index[kind].extend({**key, **row} for row in rows)
    session.touched((r["resourceType"], r["id"]) for r in resources)
    _insert(session, s.resource, current)
    _insert(session, s.resource_version, versions)
    for kind, rows in index.items():
        _insert(session, s.INDEX_TABLES[kind], rows)
    if outbox:
        session.conn.execute(insert(s.outbox), boxes)


def _insert(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Many rows at once: COPY on PostgreSQL, executemany on SQLite."""
    if not rows:
        return
    if not session.postgresql:
        session.conn.execute(insert(table), rows)
        return
    columns = list(rows[0])
    cursor = session.driver_cursor()
    names = ", ".join(f'"{c}"' for c in columns)
    with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])
