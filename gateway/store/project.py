"""The projector's batch write: many ``apply_version`` calls in a few statements.

Same outcome as calling ``SqlTransaction.apply_version`` for each resource in order: a
version is stored only when it is newer than what the store holds (same or older → no-op),
every newer version lands in the history, the current row and its index rows end at the
newest. Per batch: one SELECT … FOR UPDATE of the current rows, one multi-row write per
table (COPY on PostgreSQL), one DELETE per index table for the keys that had rows. At the
hub this is what lets one projector keep up with a network's edges (see bench/bus.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, delete, select, tuple_, update

from gateway.store import schema as s
from gateway.store.base import Resource
from gateway.store.bulk import _insert  # COPY on PostgreSQL, executemany on SQLite
from gateway.store.content import content_hash, dumps, normalise_instant
from gateway.store.search.index import index_rows
from gateway.store.tx import SqlTransaction

Key = tuple[str, str]


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


def _current_versions(tx: SqlTransaction, keys: set[Key]) -> dict[Key, int]:
    r = s.resource.c
    found: dict[Key, int] = {}
    ordered = sorted(keys)  # one lock order for every projector: no deadlock between them
    for start in range(0, len(ordered), 500):
        query = select(r.res_type, r.res_id, r.version_id).where(
            tuple_(r.res_type, r.res_id).in_(ordered[start:start + 500]))
        if tx.store.dialect == "postgresql":
            query = query.order_by(r.res_type, r.res_id).with_for_update()
        found.update({(t, i): v for t, i, v in tx.conn.execute(query)})
    return found


def _write(tx: SqlTransaction, newer: dict[Key, list[Resource]], had_row: set[Key]) -> None:
    versions: list[dict[str, Any]] = []
    current: dict[Key, dict[str, Any]] = {}
    index: dict[str, list[dict[str, Any]]] = {kind: [] for kind in s.INDEX_TABLES}
    for (rtype, rid), stored in newer.items():
        key = {"res_type": rtype, "res_id": rid}
        for resource in stored:
            versions.append({**key, **_version_values(resource), "deleted": False})
        last = stored[-1]
        current[(rtype, rid)] = {**key, **_version_values(last), "deleted": False,
                                 "content_hash": content_hash(last)}
        for kind, rows in index_rows(last).items():
            index[kind].extend({**key, **row} for row in rows)
    _insert(tx, s.resource_version, versions)
    _upsert_current(tx, current, had_row)
    _replace_index(tx, [k for k in current if k in had_row], index)


def _version_values(resource: Resource) -> dict[str, Any]:
    meta = resource["meta"]
    return {"version_id": int(meta["versionId"]), "last_updated": meta["lastUpdated"],
            "content": dumps(resource)}


def _upsert_current(tx: SqlTransaction, current: dict[Key, dict[str, Any]],
                    had_row: set[Key]) -> None:
    fresh = [row for key, row in current.items() if key not in had_row]
    changed = [{**row, "k_type": row["res_type"], "k_id": row["res_id"]}
               for key, row in current.items() if key in had_row]
    _insert(tx, s.resource, fresh)
    if changed:
        r = s.resource.c
        tx.conn.execute(
            update(s.resource).where(r.res_type == bindparam("k_type"),
                                     r.res_id == bindparam("k_id"))
            .values(version_id=bindparam("version_id"), last_updated=bindparam("last_updated"),
                    deleted=bindparam("deleted"), content=bindparam("content"),
                    content_hash=bindparam("content_hash")),
            [{k: v for k, v in row.items() if k not in ("res_type", "res_id")}
             for row in changed])


def _replace_index(tx: SqlTransaction, existing: list[Key],
                   index: dict[str, list[dict[str, Any]]]) -> None:
    for kind, table in s.INDEX_TABLES.items():
        for start in range(0, len(existing), 500):
            part = existing[start:start + 500]
            tx.conn.execute(delete(table).where(
                tuple_(table.c.res_type, table.c.res_id).in_(part)))
        _insert(tx, table, index[kind])
