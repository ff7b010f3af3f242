"""The bulk load path (imports, benchmarks): many resources in one transaction.

New resources are written with one multi-row INSERT per table and chunk; resources that
already exist go through the ordinary ``put`` (versioning, no-op on identical content).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import insert, select, tuple_

from gateway.store import schema as s
from gateway.store.base import Resource
from gateway.store.content import content_hash, dumps, now_instant, with_meta
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
    keys = [(x["resourceType"], x["id"]) for x in part]
    rows = tx.conn.execute(select(r.res_type, r.res_id)
                           .where(tuple_(r.res_type, r.res_id).in_(keys))).all()
    return {(row[0], row[1]) for row in rows}


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
        versions.append({**key, "version_id": 1, "last_updated": now, "deleted": False,
                         "content": data})
        boxes.append({"key": f"{key['res_type']}/{key['res_id']}", **key, "version_id": 1,
                      "payload": data, "headers": orjson.dumps({}).decode(), "created": now})
        for kind, rows in index_rows(stored).items():
            index[kind].extend({**key, **row} for row in rows)
    tx.conn.execute(insert(s.resource), current)
    tx.conn.execute(insert(s.resource_version), versions)
    for kind, rows in index.items():
        if rows:
            tx.conn.execute(insert(s.INDEX_TABLES[kind]), rows)
    if outbox:
        tx.conn.execute(insert(s.outbox), boxes)
